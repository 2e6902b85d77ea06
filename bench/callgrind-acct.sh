#!/usr/bin/env bash
# Instructions (callgrind "Ir") the server executes in userspace per Accounting-Request.
#
# What it does:
#   1. writes, in a temporary directory, the configuration portcullis-bench writes for its own
#      server (bench/src/server.rs: one shard, one client with require_message_authenticator,
#      log level warn; accounting records go to data/accounting/accounting-YYYY-MM-DD.jsonl) and an
#      empty users file (accounting needs no users);
#   2. starts `portcullis serve` under `valgrind --tool=callgrind --instr-atstart=no
#      --separate-threads=yes` (start-up and shutdown are not counted; one output file per
#      thread, so the shard and the accounting writer thread can be told apart), pinned to CPU 0;
#   3. switches instrumentation on (`callgrind_control -i on`), runs a closed-loop accounting
#      load with portcullis-bench against it (Start / Interim-Update / Stop of one session after
#      another; 1 socket, small window: valgrind makes the server ~50x slower, and every record
#      waits for an fdatasync), switches it off;
#   4. reads the server's counters before and after (control socket) and prints
#      Ir / (Accounting-Responses sent in between) for the whole process (all threads: socket
#      loop, tokio, pipeline, JSON, the writer thread and its fdatasync calls' userspace side)
#      and for each thread that did work, and checks that the records reached the file.
#
# Usage: bench/callgrind-acct.sh [DURATION_SECONDS=20] [WINDOW=16]
# Needs the release binaries: cargo build --release -p portcullis -p portcullis-bench
# (with $CARGO_TARGET_DIR set as for that build; default ./target). Keeps the callgrind output
# in $OUT (default: a new /tmp/callgrind-acct.XXXX directory) for callgrind_annotate, e.g.
#   callgrind_annotate --inclusive=yes $OUT/callgrind.out-02   (the shard thread)
#   cat $OUT/callgrind.out-* > all; callgrind_annotate all    (summed; or pass every file)
set -euo pipefail

DURATION=${1:-20}
WINDOW=${2:-16}
TARGET=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
BIN=$TARGET/release/portcullis
BENCH=$TARGET/release/portcullis-bench
SECRET=portcullis-bench-secret  # the secret portcullis-bench gives its own server
OUT=${OUT:-$(mktemp -d /tmp/callgrind-acct.XXXX)}
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

# Two free UDP ports on 127.0.0.1, and an empty users file.
read -r AUTH ACCT < <(python3 - <<'EOF'
import socket
a, b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])
EOF
)
printf '# Portcullis local users. Managed with `portcullis users`.\n' >"$DIR/users.toml"
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
answered() { stats | awk '$1 == "accounting_response" { n += $2 } END { print n + 0 }'; }
for _ in $(seq 600); do
    stats >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
    sleep 0.1
done
# The valgrind process is the child of the subshell's exec: same pid.
BEFORE=$(answered)
callgrind_control -i on "$PID" >/dev/null
taskset -c 1 "$BENCH" --server "127.0.0.1:$ACCT" --secret "$SECRET" --scenario accounting \
    --users 1000 --sockets 1 --window "$WINDOW" --duration "$DURATION" >"$OUT/bench.log" 2>&1 ||
    { cat "$OUT/bench.log" >&2; exit 1; }
callgrind_control -i off "$PID" >/dev/null
AFTER=$(answered)
kill -TERM "$PID"
wait "$PID" || true
PID=

REQUESTS=$((AFTER - BEFORE))
((REQUESTS > 0)) || { echo "no Accounting-Response counted" >&2; cat "$OUT/bench.log" >&2; exit 1; }
# Every acknowledged record is in the file (records of the warm-up and after the window too).
LINES=$(cat "$DIR"/data/accounting/accounting-*.jsonl | wc -l)
((LINES >= REQUESTS)) || { echo "only $LINES records on disk for $REQUESTS responses" >&2; exit 1; }
# With --separate-threads=yes: callgrind.out-NN per thread (NN: 01 main, then in start order).
IR=0
PER_THREAD=
for f in "$OUT"/callgrind.out-*; do
    n=$(awk '/^totals:/ { print $2 }' "$f")
    n=${n:-0}
    IR=$((IR + n))
    # Threads that did (almost) nothing while measuring are left out of the list.
    ((n / REQUESTS > 0)) || continue
    # Name the thread by a function only it runs.
    if grep -q writer_loop "$f"; then what="accounting writer"
    elif grep -q socket_loop "$f"; then what="shard"
    else what="other"; fi
    PER_THREAD+=$(printf '  %-20s %-18s %8d' "$(basename "$f")" "$what" "$((n / REQUESTS))")$'\n'
done
grep -E 'wrong|mismatch|error' "$OUT/bench.log" >&2 || true
echo "records acknowledged:     $REQUESTS"
echo "Ir total:                 $IR"
echo "Ir per record (process):  $((IR / REQUESTS))"
echo "Ir per record by thread:"
printf '%s' "$PER_THREAD"
echo "callgrind output:         $OUT/callgrind.out-*"
