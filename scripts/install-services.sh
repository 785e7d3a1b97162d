#!/usr/bin/env bash
# Installs the services the accounts tests run for real: Redis and PostgreSQL
# (the tests start their own instances on free loopback ports). Idempotent:
# does nothing when both are there, and nothing at all unless run as root (a
# developer's machine is left alone; the tests then skip, or fail under CI).
set -uo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != "0" ]; then
    echo "install-services: missing ${missing[*]} (run as root to install)" >&2
    exit 0
fi
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
