#!/usr/bin/env bash
# Offline enqueue on slow storage: the loadgen's offline scenario (8 QoS 1 publishers, one
# offline persistent session) with the broker's data on tests/powercut/lossyfs.py, a FUSE file
# system that can delay every fsync, at several delays (an SD card's fsync takes 5-20 ms, an
# SSD's well under 1 ms). edgemq runs with durability "sync"; Mosquitto with `persistence true`
# and its persistence file on the same kind of mount (it writes it only at shutdown or
# autosave, so it never fsyncs here). Each run gets a fresh mount. Prints a markdown table of
# medians; JSON lines go to benches/results/slow-storage.jsonl. The "0 ms" row is the cost of
# the Python FUSE layer itself: compare the rows with each other, not with the plain-disk rows
# of benches/run.sh.
#
# Needs root, /dev/fuse, fusermount (fuse3) and python3-fusepy; without them it says so and
# exits 0 (`make bench` goes on).
#
# Environment (defaults in brackets):
#   SLOW_STORAGE_DELAYS     fsync delays in ms, space separated [0 0.2 5 20]
#   SLOW_STORAGE_MESSAGES   messages enqueued per run [20000]
#   SLOW_STORAGE_WINDOW     QoS 1 messages in flight per publisher, both brokers [128]
#   SLOW_STORAGE_RUNS       runs per delay and broker [1]
#   SLOW_STORAGE_BROKERS    brokers, space separated [edgemq mosquitto]
#   SLOW_STORAGE_WAL        edgemq sqlite.max_wal_size, e.g. 4MB [edgemq's default, 512KB]
#   MOSQUITTO               Mosquitto binary [/usr/sbin/mosquitto]
#   BENCH_TIMEOUT           hard limit per run, seconds [180]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
read -r -a DELAYS <<<"${SLOW_STORAGE_DELAYS:-0 0.2 5 20}"
MESSAGES=${SLOW_STORAGE_MESSAGES:-20000}
WINDOW=${SLOW_STORAGE_WINDOW:-128}
RUNS=${SLOW_STORAGE_RUNS:-1}
read -r -a BROKERS <<<"${SLOW_STORAGE_BROKERS:-edgemq mosquitto}"
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
EXTRA=()
[[ -z ${SLOW_STORAGE_WAL:-} ]] || EXTRA=(--edgemq-sqlite "max_wal_size = \"$SLOW_STORAGE_WAL\"")
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
if [[ " ${BROKERS[*]} " == *" mosquitto "* && ! -x $MOSQUITTO ]]; then
    log "slow-storage: no Mosquitto at $MOSQUITTO: edgemq only"
    BROKERS=(edgemq)
fi
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
log "== offline enqueue, $MESSAGES messages, 8 publishers x $WINDOW in flight, $RUNS run(s), fsync delays (ms): ${DELAYS[*]}"
n=0
for delay in "${DELAYS[@]}"; do
    for run in $(seq "$RUNS"); do
        for broker in "${BROKERS[@]}"; do
            n=$((n + 1))
            backing=$WORK/backing-$n mnt=$WORK/mnt-$n
            mkdir -p "$backing" "$mnt" "$WORK/brokers"
            /usr/bin/python3 "$LOSSYFS" "$backing" "$mnt" --fsync-delay-ms "$delay" 2>>"$WORK/lossyfs.log" &
            fs_pid=$!
            for _ in $(seq 100); do [[ -e $mnt/.lossyfs ]] && break; sleep 0.05; done
            [[ -e $mnt/.lossyfs ]] || { log "slow-storage: lossyfs did not mount: $(tail -n 3 "$WORK/lossyfs.log")"; exit 1; }
            rc=0
            timeout -k 5 "$TIMEOUT" "$LOADGEN" run --broker "$broker" --scenario offline --durability sync \
                --offline-messages "$MESSAGES" --window "$WINDOW" --run "$run" --workdir "$WORK/brokers" \
                --edgemq-bin "$EDGEMQ" --mosquitto-bin "$MOSQUITTO" --data-dir "$mnt" \
                --fs-status "$mnt/.lossyfs" "${EXTRA[@]}" >"$WORK/line" 2>"$WORK/stderr" || rc=$?
            counters=$(cat "$mnt/.lossyfs")
            fusermount -u "$mnt"
            wait "$fs_pid" || true
            fs_pid=""
            line=$(tail -n 1 "$WORK/line")
            [[ $line == \{* ]] || line="{\"ok\":false,\"broker\":\"$broker\",\"error\":\"loadgen exited with $rc\"}"
            # The delay and the file system's own counters (whole run), added to the loadgen's line.
            printf '%s\n' "${line%\}},\"fsync_delay_ms\":$delay,\"lossyfs\":\"$counters\"}" >>"$OUT"
            log "   fsync delay $delay ms, $broker, run $run: exit $rc"
        done
    done
done

/usr/bin/python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault((r.get("fsync_delay_ms"), r.get("broker", "?")), []).append(r)

def med(runs, key):
    values = [r[key] for r in runs if r.get("ok") and isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None

def fmt(value, spec="{:,.0f}"):
    return "-" if value is None else spec.format(value)

print("| fsync delay | broker | window | enqueue msg/s | fsyncs while enqueuing | messages per fsync "
      "| ack p50 (ms) | ack p99 (ms) | p99 / fsync delay | runs ok |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (delay, broker), runs in rows.items():
    ok = [r for r in runs if r.get("ok")]
    for r in ok:
        syncs = r.get("enqueue_fs_fsyncs")
        if isinstance(syncs, int):
            r["_fsyncs"] = syncs + r.get("enqueue_fs_fsyncdirs", 0)
            if r["_fsyncs"]:
                r["_per_fsync"] = r.get("acked", 0) / r["_fsyncs"]
        r["_p50_ms"] = r.get("ack_p50_us", float("nan")) / 1000
        r["_p99_ms"] = r.get("ack_p99_us", float("nan")) / 1000
        if delay:
            r["_p99_x"] = r["_p99_ms"] / delay
    window = ok[0].get("window") if ok else None
    broker_name = "edgemq (sync)" if broker == "edgemq" else "Mosquitto (persistence, no fsync)" if broker == "mosquitto" else broker
    print(f"| {delay} ms | {broker_name} | {fmt(window, '{}')} | {fmt(med(runs, 'enqueue_per_s'))} | "
          f"{fmt(med(runs, '_fsyncs'))} | {fmt(med(runs, '_per_fsync'), '{:,.1f}')} | "
          f"{fmt(med(runs, '_p50_ms'), '{:.2f}')} | {fmt(med(runs, '_p99_ms'), '{:.2f}')} | "
          f"{fmt(med(runs, '_p99_x'), '{:.1f}')} | {len(ok)}/{len(runs)} |")
for r in (r for runs in rows.values() for r in runs if not r.get("ok")):
    print(f"- failed: {r.get('broker')} at {r.get('fsync_delay_ms')} ms: {r.get('error', '')}")
PY
