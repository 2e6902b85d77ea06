#!/usr/bin/env bash
# Starts the privacyIDEA development server prepared by setup.sh, in the foreground, on
# 127.0.0.1:PORT. With --tls it serves HTTPS with the certificate setup.sh made (trust
# $PORTCULLIS_PI_DIR/conf/tls/ca.pem).
#
#   tests/privacyidea/run.sh PORT [--tls]
set -euo pipefail
PORT="${1:?usage: run.sh PORT [--tls]}"
PI_DIR="${PORTCULLIS_PI_DIR:-/var/tmp/portcullis-privacyidea}"
[ -f "$PI_DIR/conf/pi.cfg" ] || { echo "privacyidea run: run tests/privacyidea/setup.sh first" >&2; exit 1; }
export PRIVACYIDEA_CONFIGFILE="$PI_DIR/conf/pi.cfg"
TLS=()
if [ "${2:-}" = "--tls" ]; then
    TLS=(--cert "$PI_DIR/conf/tls/server.pem" --key "$PI_DIR/conf/tls/server.key")
fi
exec "$PI_DIR/venv/bin/pi-manage" run -h 127.0.0.1 -p "$PORT" --no-reload --no-debugger "${TLS[@]}"
