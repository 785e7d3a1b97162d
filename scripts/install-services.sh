#!/usr/bin/env bash
# Installs the services the integration tests run for real (Redis; PostgreSQL 15
# is expected from the OS image). Idempotent: does nothing when they are there,
# and nothing at all unless run as root (a developer's machine is left alone).
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install-services: redis-server is missing (run as root to install it)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq redis-server >/dev/null
# The package starts a system instance; the tests start their own on free ports.
if command -v service >/dev/null 2>&1; then service redis-server stop >/dev/null 2>&1 || true; fi
