#!/usr/bin/env bash
# Instructions (callgrind "Ir") the server executes in userspace per PAP Access-Request.
#
# What it does:
#   1. writes, in a temporary directory, the configuration portcullis-bench writes for its own
#      server (bench/src/server.rs: one shard, one client with require_message_authenticator,
#      log level warn) and a users file of 1000 bench users (user0000.., password Bench#0000pw..)
#      with {SSHA512} hashes (deterministic salts, so runs are comparable);
#   2. starts `portcullis serve` under `valgrind --tool=callgrind --instr-atstart=no` (start-up,
#      users file parsing and shutdown are not counted), pinned to CPU 0;
#   3. switches instrumentation on (`callgrind_control -i on`), runs a closed-loop PAP load
#      with portcullis-bench against it (1 socket, small window: valgrind makes the server ~50x
#      slower; 1 request in 100 has a wrong password, as in every bench run), switches it off;
#   4. reads the server's counters before and after (control socket) and prints
#      Ir / (Access-Accepts + Access-Rejects sent in between), for the whole process (socket
#      loop, tokio, pipeline, crypto) and for Pipeline::handle alone (inclusive).
#
# Usage: bench/callgrind-pap.sh [DURATION_SECONDS=20] [WINDOW=4]
# Needs the release binaries: cargo build --release -p portcullis -p portcullis-bench
# (with $CARGO_TARGET_DIR set as for that build; default ./target). Keeps the callgrind output
# in $OUT (default: a new /tmp/callgrind-pap.XXXX directory) for callgrind_annotate.
set -euo pipefail

DURATION=${1:-20}
WINDOW=${2:-4}
TARGET=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
BIN=$TARGET/release/portcullis
BENCH=$TARGET/release/portcullis-bench
SECRET=portcullis-bench-secret  # the secret portcullis-bench gives its own server
OUT=${OUT:-$(mktemp -d /tmp/callgrind-pap.XXXX)}
mkdir -p "$OUT"
for b in "$BIN" "$BENCH"; do
    [[ -x $b ]] || { echo "missing $b (cargo build --release -p portcullis -p portcullis-bench)" >&2; exit 1; }
done

DIR=$(mktemp -d /tmp/portcullis-callgrind.XXXX)
PID=
cleanup() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT

# Two free UDP ports on 127.0.0.1, and the users file.
read -r AUTH ACCT < <(python3 - <<'EOF'
import socket
a, b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])
EOF
)
python3 - "$DIR/users.toml" <<'EOF'
import base64, hashlib, sys
lines = ["# Portcullis local users. Managed with `portcullis users`."]
for i in range(1000):
    salt = hashlib.sha256(b"salt%d" % i).digest()[:16]
    pw = b"Bench#%04dpw" % i
    h = base64.b64encode(hashlib.sha512(pw + salt).digest() + salt).decode()
    lines += ["", "[[user]]", 'name = "user%04d"' % i, 'password = "{SSHA512}%s"' % h]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
EOF
chmod 600 "$DIR/users.toml"
cat > "$DIR/portcullis.toml" <<EOF
data_dir = "data"

[server]
auth_listen = ["127.0.0.1:$AUTH"]
acct_listen = ["127.0.0.1:$ACCT"]
shards = 1

[xdp]
mode = "off"

[[client]]
name = "bench"
address = "127.0.0.0/8"
secret = "$SECRET"
require_message_authenticator = true

[users]
file = "users.toml"

[log]
level = "warn"
format = "text"
EOF
chmod 600 "$DIR/portcullis.toml"

(cd "$DIR" && exec taskset -c 0 valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$OUT/callgrind.out" \
    "$BIN" serve --config "$DIR/portcullis.toml" >"$OUT/server.log" 2>&1) &
PID=$!

stats() { "$BIN" stats --socket "$DIR/data/portcullis.sock"; }
answered() { stats | awk '$1 == "access_accept" || $1 == "access_reject" { n += $2 } END { print n + 0 }'; }
for _ in $(seq 600); do
    stats >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
    sleep 0.1
done
# The valgrind process is the child of the subshell's exec: same pid.
BEFORE=$(answered)
callgrind_control -i on "$PID" >/dev/null
taskset -c 1 "$BENCH" --server "127.0.0.1:$AUTH" --secret "$SECRET" --scenario pap \
    --users 1000 --sockets 1 --window "$WINDOW" --duration "$DURATION" >"$OUT/bench.log" 2>&1 ||
    { cat "$OUT/bench.log" >&2; exit 1; }
callgrind_control -i off "$PID" >/dev/null
AFTER=$(answered)
kill -TERM "$PID"
wait "$PID" || true
PID=

REQUESTS=$((AFTER - BEFORE))
IR=$(awk '/^totals:/ { print $2 }' "$OUT/callgrind.out")
HANDLE=$(callgrind_annotate --inclusive=yes "$OUT/callgrind.out" 2>/dev/null |
    awk '/Pipeline::handle[^_a-z]/ && !found { gsub(",", "", $1); print $1; found = 1 }')
grep -E 'wrong|mismatch|error' "$OUT/bench.log" >&2 || true
echo "requests answered:        $REQUESTS"
echo "Ir total:                 $IR"
echo "Ir per request (process): $((IR / REQUESTS))"
[[ -n $HANDLE ]] && echo "Ir per request (Pipeline::handle): $((HANDLE / REQUESTS))"
echo "callgrind output:         $OUT/callgrind.out"
