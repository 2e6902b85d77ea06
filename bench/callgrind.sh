#!/usr/bin/env bash
# Instructions (callgrind "Ir") the server executes in userspace per request: per PAP
# Access-Request (`pap`) or per accounting record (`accounting`).
#
# What it does:
#   1. writes, in a temporary directory, the configuration portcullis-bench writes for its own
#      server (bench/src/server.rs: one shard, one client with require_message_authenticator,
#      log level warn; accounting records go to data/accounting/accounting-YYYY-MM-DD.jsonl)
#      and a users file: for `pap` 1000 bench users (user0000.., password Bench#0000pw..) with
#      {SSHA512} hashes (deterministic salts, so runs are comparable), for `accounting` none;
#   2. starts `portcullis serve` under `valgrind --tool=callgrind --instr-atstart=no
#      --separate-threads=yes` (start-up, users file parsing and shutdown are not counted; one
#      output file per thread, so the shard and the accounting writer can be told apart),
#      pinned to CPU 0;
#   3. switches instrumentation on (`callgrind_control -i on`), runs a closed-loop load of the
#      scenario with portcullis-bench against it (1 socket, small window: valgrind makes the
#      server ~50x slower; `pap`: 1 request in 100 has a wrong password, as in every bench run;
#      `accounting`: Start / Interim-Update / Stop of one session after another, every record
#      waiting for its batch to be durable), switches it off;
#   4. reads the server's counters before and after (control socket) and prints Ir per answer
#      (Access-Accepts + Access-Rejects, or Accounting-Responses) for the whole process, for
#      each thread that did work, and for `pap` for Pipeline::handle alone (inclusive); for
#      `accounting` it checks that the acknowledged records reached the file.
#
# Usage: bench/callgrind.sh pap|accounting [DURATION_SECONDS=20] [WINDOW=4 for pap, 16 for accounting]
# Needs the release binaries: cargo build --release -p portcullis -p portcullis-bench
# (with $CARGO_TARGET_DIR set as for that build; default ./target). Keeps the callgrind output
# in $OUT (default: a new /tmp/callgrind-SCENARIO.XXXX directory) for callgrind_annotate, e.g.
#   callgrind_annotate --inclusive=yes $OUT/callgrind.out-02   (the shard thread)
set -euo pipefail

SCENARIO=${1:-}
case $SCENARIO in
pap) DEFAULT_WINDOW=4 ;;
accounting) DEFAULT_WINDOW=16 ;;
*) echo "usage: $0 pap|accounting [DURATION_SECONDS] [WINDOW]" >&2; exit 2 ;;
esac
DURATION=${2:-20}
WINDOW=${3:-$DEFAULT_WINDOW}
TARGET=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
BIN=$TARGET/release/portcullis
BENCH=$TARGET/release/portcullis-bench
SECRET=portcullis-bench-secret  # the secret portcullis-bench gives its own server
OUT=${OUT:-$(mktemp -d "/tmp/callgrind-$SCENARIO.XXXX")}
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
if [[ $SCENARIO == pap ]]; then
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
else
    printf '# Portcullis local users. Managed with `portcullis users`.\n' >"$DIR/users.toml"
fi
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

(cd "$DIR" && exec taskset -c 0 valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
    --callgrind-out-file="$OUT/callgrind.out" \
    "$BIN" serve --config "$DIR/portcullis.toml" >"$OUT/server.log" 2>&1) &
PID=$!

stats() { "$BIN" stats --socket "$DIR/data/portcullis.sock"; }
if [[ $SCENARIO == pap ]]; then
    COUNTERS='$1 == "access_accept" || $1 == "access_reject"'
    PORT=$AUTH
    WHAT=request
else
    COUNTERS='$1 == "accounting_response"'
    PORT=$ACCT
    WHAT=record
fi
answered() { stats | awk "$COUNTERS"' { n += $2 } END { print n + 0 }'; }
for _ in $(seq 600); do
    stats >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
    sleep 0.1
done
# The valgrind process is the child of the subshell's exec: same pid.
BEFORE=$(answered)
callgrind_control -i on "$PID" >/dev/null
taskset -c 1 "$BENCH" --server "127.0.0.1:$PORT" --secret "$SECRET" --scenario "$SCENARIO" \
    --users 1000 --sockets 1 --window "$WINDOW" --duration "$DURATION" >"$OUT/bench.log" 2>&1 ||
    { cat "$OUT/bench.log" >&2; exit 1; }
callgrind_control -i off "$PID" >/dev/null
AFTER=$(answered)
kill -TERM "$PID"
wait "$PID" || true
PID=

REQUESTS=$((AFTER - BEFORE))
((REQUESTS > 0)) || { echo "no answer counted" >&2; cat "$OUT/bench.log" >&2; exit 1; }
grep -E 'wrong|mismatch|error' "$OUT/bench.log" >&2 || true
if [[ $SCENARIO == accounting ]]; then
    # Every acknowledged record is in the file (records of the warm-up and after the window too).
    LINES=$(cat "$DIR"/data/accounting/accounting-*.jsonl | wc -l)
    ((LINES >= REQUESTS)) || { echo "only $LINES records on disk for $REQUESTS responses" >&2; exit 1; }
fi
# With --separate-threads=yes: callgrind.out-NN per thread (NN: 01 main, then in start order).
IR=0
HANDLE=0
PER_THREAD=
for f in "$OUT"/callgrind.out-*; do
    n=$(awk '/^totals:/ { print $2 }' "$f")
    n=${n:-0}
    IR=$((IR + n))
    # Threads that did (almost) nothing while measuring are left out of the list.
    ((n / REQUESTS > 0)) || continue
    # Name the thread by code only it runs (the writer's loop is inlined: its file it is).
    if grep -q socket_loop "$f"; then what="shard"
    elif grep -q 'src/accounting\.rs$' "$f"; then what="accounting writer"
    else what="other"; fi
    PER_THREAD+=$(printf '  %-20s %-18s %8d' "$(basename "$f")" "$what" "$((n / REQUESTS))")$'\n'
    if [[ $SCENARIO == pap ]]; then
        h=$(callgrind_annotate --inclusive=yes "$f" 2>/dev/null |
            awk '/Pipeline::handle[^_a-z]/ && !found { gsub(",", "", $1); print $1; found = 1 }')
        HANDLE=$((HANDLE + ${h:-0}))
    fi
done
echo "answers:                  $REQUESTS"
echo "Ir total:                 $IR"
echo "Ir per $WHAT (process):  $((IR / REQUESTS))"
echo "Ir per $WHAT by thread:"
printf '%s' "$PER_THREAD"
((HANDLE > 0)) && echo "Ir per $WHAT (Pipeline::handle): $((HANDLE / REQUESTS))"
echo "callgrind output:         $OUT/callgrind.out-*"
