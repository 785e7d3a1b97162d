#!/usr/bin/env bash
# Installs the system packages ezlink uses from Debian: Redis and PostgreSQL,
# which the accounts tests run for real (they start their own instances on
# free loopback ports), and espeak-ng, the separate program the local voice
# takes its phonemes from (GPL, run as a process, so ezlink stays MIT).
#
#   install-services.sh          everything (what `make test` needs)
#   install-services.sh speech   espeak-ng only (what `make serve` needs)
#
# Idempotent: does nothing when they are there, and nothing at all unless run
# as root (a developer's machine is left alone; the tests then skip, or fail
# under CI, and the server serves without a voice, saying why).
set -uo pipefail

missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
if [ "${1:-all}" != "speech" ]; then
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
        missing+=(postgresql)
    fi
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != "0" ]; then
    echo "install-services: missing ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 0
fi
echo "install-services: installing ${missing[*]} (apt-get, as root)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    echo "install-services: could not install ${missing[*]}" >&2
    exit 0
fi
# The packages start system instances; the tests start their own.
if command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
    service postgresql stop >/dev/null 2>&1 || true
fi
exit 0
