#!/usr/bin/env bash
# edgemq benchmark: every scenario against edgemq AND Mosquitto, interleaved, BENCH_RUNS times;
# JSON lines to benches/results/latest.jsonl, then a markdown table of medians on stdout.
#
# Fan-in (fanin_q1_ws too: fan-in QoS 1 with every client over WebSockets), fan-out and stuck
# run Mosquitto twice: with its shipped limits ("defaults", the set-up of issue 5's reference
# table: it drops at its queue limit, counted as lost) and set up not to
# drop ("no-drop": a 1,000,000 queue, edgemq's window, publishers capped at the queue). Latency
# and idle run it once with its defaults, offline once with persistence and a 100,000 queue.
# The bridge scenarios (bridge_live, bridge_replay, bridge_kill9, and the same three with
# `_sink`; `bridge` in BENCH_SCENARIOS names all six) run a local broker bridging to an
# upstream: edgemq's bridge against Mosquitto as the bridge, each with a fresh upstream, which
# is Mosquitto or (`_sink`) the load generator's own MQTT sink, cheap enough per message that
# the bridge is what is measured.
#
# Each scenario run is one `edgemq-loadgen run` process that starts a fresh broker in its own
# directory under a private temporary directory, drives it, kills it and prints one JSON line.
# Every run is bounded by `timeout`; on exit (normal, error, Ctrl-C) the trap kills whatever
# is still running and removes the temporary directory.
#
# Environment (defaults in brackets):
#   BENCH_RUNS              runs of every scenario per broker [2]
#   BENCH_SCENARIOS         subset, space separated [all: see `edgemq-loadgen scenarios`]
#   BENCH_DURATION          seconds of publishing per fan-in / fan-out / stuck scenario and
#                           per subs100k phase [4]
#   BENCH_LATENCY_DURATION  seconds of each fixed-rate latency scenario [10]
#   BENCH_CONNECTIONS       idle connections [5000]
#   BENCH_IDLE_WINDOW       seconds the idle scenario watches broker CPU and wake-ups [5]
#   BENCH_PROTOCOL          3.1.1 or 5 [3.1.1]
#   BENCH_TIMEOUT           hard limit per scenario run, seconds [180]
#   BENCH_ARGS              extra flags for every `edgemq-loadgen run` (see its --help)
#   MOSQUITTO               Mosquitto binary [/usr/sbin/mosquitto]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-2}
DURATION=${BENCH_DURATION:-4}
LATENCY_DURATION=${BENCH_LATENCY_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-5000}
IDLE_WINDOW=${BENCH_IDLE_WINDOW:-5}
PROTOCOL=${BENCH_PROTOCOL:-3.1.1}
TIMEOUT=${BENCH_TIMEOUT:-180}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
read -r -a EXTRA <<<"${BENCH_ARGS:-}"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RESULTS=$ROOT/benches/results
OUT=$RESULTS/latest.jsonl

log() { printf '%s\n' "$*" >&2; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { log "BENCH_RUNS must be a positive integer"; exit 2; }
[[ -x $MOSQUITTO ]] || { log "Mosquitto not found at $MOSQUITTO (set MOSQUITTO=...)"; exit 2; }
command -v timeout >/dev/null || { log "coreutils timeout is required"; exit 2; }

log "== building edgemq and edgemq-loadgen (release)"
(cd "$ROOT" && cargo build --release --quiet --bin edgemq && cargo build --release --quiet -p edgemq-loadgen)
EDGEMQ=$TARGET/release/edgemq
LOADGEN=$TARGET/release/edgemq-loadgen
read -r -a SCENARIOS <<<"${BENCH_SCENARIOS:-$("$LOADGEN" scenarios)}"
# `bridge` is short for the six bridge scenarios.
expanded=()
for s in "${SCENARIOS[@]}"; do
    if [[ $s == bridge ]]; then
        expanded+=(bridge_live bridge_replay bridge_kill9 bridge_live_sink bridge_replay_sink bridge_kill9_sink)
    else
        expanded+=("$s")
    fi
done
SCENARIOS=("${expanded[@]}")

# The idle scenario holds CONNECTIONS sockets in the load generator and as many in the broker
# (each process has its own table, both inherit this limit); idle_15k and storm_15k 15,000,
# subs100k 10,000.
need=$((CONNECTIONS > 15000 ? CONNECTIONS + 256 : 15256))
soft=$(ulimit -Sn)
if [[ $soft != unlimited && $soft -lt $need ]]; then
    hard=$(ulimit -Hn)
    if [[ $hard == unlimited || $hard -ge $need ]]; then
        ulimit -Sn "$need"
    else
        ulimit -Sn "$hard"
        CONNECTIONS=$((hard - 256))
        log "warning: ulimit -n hard limit is $hard: idle scenario uses $CONNECTIONS connections"
    fi
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgemq-bench.XXXXXX")
current=""

cleanup() {
    local rc=$? f pid
    trap - EXIT INT TERM
    if [[ -n $current ]]; then
        # timeout forwards the signal to its process group: the load generator and broker.
        kill -TERM "$current" 2>/dev/null || true
        wait "$current" 2>/dev/null || true
    fi
    # A broker whose load generator died before it could kill it. Only processes whose
    # command line names our private directory are touched.
    for f in "$WORK"/*/broker.pid; do
        [[ -f $f ]] || continue
        pid=$(<"$f")
        if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$WORK"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$RESULTS"
: >"$OUT"

# run_one BROKER SCENARIO RUN [extra loadgen flags...]: one fresh broker, one JSON line.
run_one() {
    local broker=$1 scenario=$2 run=$3 rc=0 line variant i
    shift 3
    # The variant the load generator would have recorded, for the line written on its behalf.
    if [[ $broker == edgemq ]]; then variant=sync
    elif [[ $scenario == offline ]]; then variant=persistence
    elif [[ $scenario == bridge_* ]]; then variant=bridge
    else variant=defaults; fi
    local args=("$@")
    for ((i = 0; i + 1 < ${#args[@]}; i++)); do
        case ${args[i]} in --durability | --mosquitto-variant) variant=${args[i + 1]} ;; esac
    done
    timeout -k 5 "$TIMEOUT" "$LOADGEN" run --broker "$broker" --scenario "$scenario" --run "$run" \
        --workdir "$WORK" --edgemq-bin "$EDGEMQ" --mosquitto-bin "$MOSQUITTO" \
        --protocol "$PROTOCOL" --duration "$DURATION" --latency-duration "$LATENCY_DURATION" \
        --connections "$CONNECTIONS" --idle-window "$IDLE_WINDOW" "${EXTRA[@]}" "$@" \
        >"$WORK/line" 2>"$WORK/stderr" &
    current=$!
    wait "$current" || rc=$?
    current=""
    line=$(tail -n 1 "$WORK/line")
    if [[ $line != \{* ]]; then
        # Killed by timeout (124/137) or crashed before printing: still one line per run.
        line=$(printf '{"scenario":"%s","broker":"%s","variant":"%s","run":%s,"ok":false,"error":"load generator exited with status %s: %s"}' \
            "$scenario" "$broker" "$variant" "$run" "$rc" "$(tr -d '"\\\n' <"$WORK/stderr" | tail -c 200)")
    fi
    printf '%s\n' "$line" >>"$OUT"
    # Directories kept because a broker died: keep them with the results.
    for d in "$WORK"/*/; do
        [[ -d $d ]] || continue
        mkdir -p "$RESULTS/kept" && mv "$d" "$RESULTS/kept/" 2>/dev/null || rm -rf "$d"
    done
    local ok=${line#*\"ok\":}
    log "   $(printf '%-10s %-10s run %s %s' "$scenario" "$broker" "$run" "$*") ok=${ok%%,*}"
}

log "== $RUNS run(s) of: ${SCENARIOS[*]}"
log "   $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), ulimit -n $(ulimit -Sn)"
start=$(date +%s)
for run in $(seq 1 "$RUNS"); do
    # Alternate which broker (and which Mosquitto set-up) goes first, so warm caches and
    # background noise do not always favour the same one.
    if ((run % 2 == 1)); then
        order=(edgemq mosquitto) mosquitto_variants=(defaults no-drop)
    else
        order=(mosquitto edgemq) mosquitto_variants=(no-drop defaults)
    fi
    for scenario in "${SCENARIOS[@]}"; do
        for broker in "${order[@]}"; do
            if [[ $scenario == offline && $broker == edgemq ]]; then
                run_one edgemq offline "$run" --durability sync
                run_one edgemq offline "$run" --durability batch
            elif [[ $broker == edgemq ]]; then
                # edgemq runs with its default queue: at the limit it pauses publishers
                # (back-pressure) where Mosquitto would drop, so it needs no 1M queue.
                run_one edgemq "$scenario" "$run" --edgemq-queue 1000
            elif [[ $scenario == fanin_* || $scenario == fanout* || $scenario == stuck ]]; then
                for variant in "${mosquitto_variants[@]}"; do
                    run_one mosquitto "$scenario" "$run" --mosquitto-variant "$variant"
                done
            else
                run_one mosquitto "$scenario" "$run"
            fi
        done
    done
done
log "== done in $(($(date +%s) - start)) s; JSON lines in ${OUT#"$ROOT"/}"

echo
echo "edgemq $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') vs $("$MOSQUITTO" -h 2>/dev/null | head -n 1 | sed 's/ (build.*//')," \
    "MQTT $PROTOCOL, $RUNS run(s), medians; $(nproc) CPUs shared by broker and load generator."
echo
"$LOADGEN" report "$OUT" | tee "$RESULTS/latest.md"
