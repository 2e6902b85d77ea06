#!/usr/bin/env bash
# PAP against Active Directory: requests per second and latency percentiles.
#
#   tests/samba/bench-ad.sh [USERS] [DURATION_S] [WINDOW]      (defaults: 200 10 64)
#
# Needs the release binaries (cargo build --release -p portcullis -p portcullis-bench;
# CARGO_TARGET_DIR is honoured) and root. It prepares the Samba AD DC with tests/samba/setup.sh,
# adds the load generator's users `user0000`... with its passwords (`Bench#NNNNpw`) over LDAPS
# (once per DC, remembered in the DC directory), starts Portcullis with no local users and a
# `[directory]` section pointing at the DC, and runs
#   portcullis-bench --scenario pap --server 127.0.0.1:PORT --secret S --users USERS ...
# against it. Every request is a real LDAP search (service account, pooled connection) plus a
# simple bind as the user (separate pooled connection) plus the nested-group search (cached for
# group_cache_ttl_seconds); Samba runs on the same 2-core machine, so the figure is the whole
# chain's, DC included.
set -euo pipefail

USERS="${1:-200}"
DURATION="${2:-10}"
WINDOW="${3:-64}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PORTCULLIS="$TARGET/release/portcullis"
BENCH="$TARGET/release/portcullis-bench"
for b in "$PORTCULLIS" "$BENCH"; do
    [ -x "$b" ] || { echo "bench-ad: $b missing (cargo build --release -p portcullis -p portcullis-bench)" >&2; exit 1; }
done

DIR="$(bash "$HERE/setup.sh")"
# shellcheck disable=SC1091
. "$DIR/env"
export LDAPTLS_CACERT="$CA_FILE"

# The load generator's users, once per DC (and per count).
if [ "$(cat "$DIR/.bench-users" 2>/dev/null || echo 0)" -lt "$USERS" ]; then
    echo "bench-ad: creating $USERS bench users in the DC" >&2
    pw() { printf '"%s"' "$1" | iconv -f UTF-8 -t UTF-16LE | base64 -w0; }
    {
        for i in $(seq 0 $((USERS - 1))); do
            n="$(printf 'user%04d' "$i")"
            printf 'dn: CN=%s,CN=Users,%s\nchangetype: add\nobjectClass: user\nsAMAccountName: %s\nunicodePwd:: %s\nuserAccountControl: 512\n\n' \
                "$n" "$BASE_DN" "$n" "$(pw "$(printf 'Bench#%04dpw' "$i")")"
        done
    } >"$DIR/bench-users.ldif"
    ldapmodify -c -H ldaps://127.0.0.1 -x -D "$ADMIN_DN" -w "$ADMIN_PASS" -f "$DIR/bench-users.ldif" \
        >"$DIR/bench-users.log" 2>&1 || grep -q "Already exists" "$DIR/bench-users.log" \
        || { tail "$DIR/bench-users.log" >&2; exit 1; }
    echo "$USERS" >"$DIR/.bench-users"
fi

WORK="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; [ -n "${KEEP_LOG:-}" ] && cp "$WORK/server.log" "$KEEP_LOG"; rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 20000))
SECRET="bench-ad-secret"
cat >"$WORK/portcullis.toml" <<EOF
data_dir = "data"
[server]
auth_listen = ["127.0.0.1:$PORT"]
acct_listen = ["127.0.0.1:$((PORT + 1))"]
shards = 1
[xdp]
mode = "off"
[log]
level = "warn"
[[client]]
name = "bench"
address = "127.0.0.0/8"
secret = "$SECRET"
[directory]
servers = ["ldaps://127.0.0.1:636"]
base_dn = "$BASE_DN"
bind_dn = "$SVC_DN"
bind_password_file = "$DIR/svc-radius.password"
ca_file = "$CA_FILE"
domain = "$DOMAIN"
pool_size = 16
EOF
RUST_LOG="${RUST_LOG:-warn}" taskset -c 0 "$PORTCULLIS" serve --config "$WORK/portcullis.toml" >"$WORK/server.log" 2>&1 &
PID=$!
sleep 1
kill -0 "$PID" || { cat "$WORK/server.log" >&2; exit 1; }
echo "bench-ad: $BENCH --scenario pap --server 127.0.0.1:$PORT --secret $SECRET --users $USERS --duration $DURATION --window $WINDOW --client-cpu 1" >&2
"$BENCH" --scenario pap --server "127.0.0.1:$PORT" --secret "$SECRET" --users "$USERS" \
    --duration "$DURATION" --window "$WINDOW" --client-cpu 1
