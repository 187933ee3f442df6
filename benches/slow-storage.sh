#!/usr/bin/env bash
# Offline enqueue on slow storage: the loadgen's offline scenario (8 QoS 1 publishers, one
# offline persistent session, durability "sync") with edgemq's data on tests/powercut/lossyfs.py,
# a FUSE file system that can delay every fsync, at several delays (an SD card's fsync takes
# 5-20 ms, an SSD's well under 1 ms). Prints a markdown table; JSON lines go to
# benches/results/slow-storage.jsonl. The "0 ms" row is the cost of the Python FUSE layer
# itself: compare the rows with each other, not with the plain-disk rows of benches/run.sh.
#
# Needs root, /dev/fuse, fusermount (fuse3) and python3-fusepy; without them it says so and
# exits 0 (`make bench` goes on).
#
# Environment (defaults in brackets):
#   SLOW_STORAGE_DELAYS     fsync delays in ms, space separated [0 0.2 5 20]
#   SLOW_STORAGE_MESSAGES   messages enqueued per run [50000]
#   BENCH_TIMEOUT           hard limit per run, seconds [180]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
read -r -a DELAYS <<<"${SLOW_STORAGE_DELAYS:-0 0.2 5 20}"
MESSAGES=${SLOW_STORAGE_MESSAGES:-50000}
TIMEOUT=${BENCH_TIMEOUT:-180}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LOSSYFS=$ROOT/tests/powercut/lossyfs.py
RESULTS=$ROOT/benches/results
OUT=$RESULTS/slow-storage.jsonl

log() { printf '%s\n' "$*" >&2; }

why=""
[[ $(id -u) -eq 0 ]] || why="needs root (FUSE mount)"
[[ -e /dev/fuse ]] || why="no /dev/fuse"
command -v fusermount >/dev/null || why="no fusermount (apt-get install fuse3)"
/usr/bin/python3 -c 'import fusepy' 2>/dev/null || why="no python3-fusepy (apt-get install python3-fusepy)"
if [[ -n $why ]]; then
    log "slow-storage: skipped: $why"
    exit 0
fi

log "== slow storage: building edgemq and edgemq-loadgen (release)"
(cd "$ROOT" && cargo build --release --quiet --bin edgemq && cargo build --release --quiet -p edgemq-loadgen)
EDGEMQ=$TARGET/release/edgemq
LOADGEN=$TARGET/release/edgemq-loadgen

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgemq-slow.XXXXXX")
fs_pid="" mnt=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $mnt ]] && mountpoint -q "$mnt"; then
        fusermount -u -z "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    fi
    if [[ -n $fs_pid ]]; then kill "$fs_pid" 2>/dev/null || true; wait "$fs_pid" 2>/dev/null || true; fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$RESULTS"
: >"$OUT"
log "== offline enqueue, $MESSAGES messages, fsync delays (ms): ${DELAYS[*]}"
for delay in "${DELAYS[@]}"; do
    backing=$WORK/backing-$delay mnt=$WORK/mnt-$delay
    mkdir -p "$backing" "$mnt" "$WORK/brokers"
    /usr/bin/python3 "$LOSSYFS" "$backing" "$mnt" --fsync-delay-ms "$delay" 2>>"$WORK/lossyfs.log" &
    fs_pid=$!
    for _ in $(seq 100); do [[ -e $mnt/.lossyfs ]] && break; sleep 0.05; done
    [[ -e $mnt/.lossyfs ]] || { log "slow-storage: lossyfs did not mount: $(tail -n 3 "$WORK/lossyfs.log")"; exit 1; }
    rc=0
    timeout -k 5 "$TIMEOUT" "$LOADGEN" run --broker edgemq --scenario offline --durability sync \
        --offline-messages "$MESSAGES" --workdir "$WORK/brokers" --edgemq-bin "$EDGEMQ" \
        --edgemq-data "$mnt" >"$WORK/line" 2>"$WORK/stderr" || rc=$?
    counters=$(cat "$mnt/.lossyfs")
    fusermount -u "$mnt"
    wait "$fs_pid" || true
    fs_pid=""
    line=$(tail -n 1 "$WORK/line")
    [[ $line == \{* ]] || line="{\"ok\":false,\"error\":\"loadgen exited with $rc\"}"
    # The delay and the file system's own counters, added to the loadgen's line.
    printf '%s\n' "${line%\}},\"fsync_delay_ms\":$delay,\"lossyfs\":\"$counters\"}" >>"$OUT"
    log "   fsync delay $delay ms: exit $rc"
done

/usr/bin/python3 - "$OUT" <<'PY'
import json, sys
print("| fsync delay | enqueue msg/s | enqueue s | log syncs | messages per log sync | ok |")
print("|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    f = lambda k, fmt="{:.0f}": fmt.format(r[k]) if isinstance(r.get(k), (int, float)) else "-"
    print(f"| {r.get('fsync_delay_ms')} ms | {f('enqueue_per_s')} | {f('enqueue_s', '{:.2f}')} | "
          f"{f('log_syncs')} | {f('messages_per_sync', '{:.1f}')} | {r.get('ok')} {r.get('error', '')} |")
PY
