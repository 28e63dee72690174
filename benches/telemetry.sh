#!/usr/bin/env bash
# What telemetry costs `cascade run` on the 500-job fan-out of engine.sh, side by side in
# one hyperfine run:
#   off : no --telemetry (the baseline)
#   live: --telemetry mqtt://127.0.0.1:PORT, a mosquitto started here
#   dead: --telemetry mqtt://127.0.0.1:PORT2, where nothing listens
#   nats: --telemetry nats://127.0.0.1:PORT3, a nats-server started here (when installed)
# Prints hyperfine's table, the ratios to off of means and of medians (targets for live
# and dead: < 1.05 each), the same ratios from the commands run interleaved round by round
# (robust to load that drifts on a shared machine), and how many messages a subscriber
# got from one live run (so "live" really published).
# Usage: benches/telemetry.sh [RUNS]   (installs hyperfine and mosquitto if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
JOBS=$(nproc)
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
if ! command -v hyperfine >/dev/null || [ ! -x "$MOSQUITTO" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine mosquitto
fi
cargo build --release --locked -p cascade-cli >&2
CASCADE=${CARGO_TARGET_DIR:-$PWD/target}/release/cascade
WORK=$(mktemp -d)
BROKER_PID=
NATS_PID=
cleanup() {
  for pid in $BROKER_PID $NATS_PID; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
python3 ../shared/bench/gen.py "$WORK" --fan 500 --layers 1 --width 1 >&2
python3 benches/dag2ci.py "$WORK/fanout/dag.json" "$WORK/fanout/ci.yaml"
"$CASCADE" validate "$WORK/fanout/ci.yaml" >&2

export CASCADE_DATA_DIR=$WORK/data
RUN="$CASCADE run $WORK/fanout/ci.yaml -j$JOBS --output json"
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
LIVE=$(free_port)
DEAD=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$LIVE" >"$WORK/mosquitto.conf"
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
BROKER_PID=$!
wait_port() {
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
    sleep 0.1
  done
}
wait_port "$LIVE"
NATS=()
if command -v nats-server >/dev/null; then
  NATS_PORT=$(free_port)
  nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
  NATS_PID=$!
  wait_port "$NATS_PORT"
  NATS=(--command-name nats "$RUN --telemetry nats://127.0.0.1:$NATS_PORT")
fi

echo "## fan-out 500 jobs, -j$JOBS: telemetry off, live mosquitto, dead broker${NATS_PID:+, live nats-server}"
hyperfine --style basic --warmup 2 --runs "$RUNS" -N \
  --export-json "$WORK/telemetry.json" --export-markdown "$WORK/telemetry.md" \
  --command-name off "$RUN" \
  --command-name live "$RUN --telemetry mqtt://127.0.0.1:$LIVE" \
  --command-name dead "$RUN --telemetry mqtt://127.0.0.1:$DEAD" \
  "${NATS[@]}" \
  >&2
cat "$WORK/telemetry.md"
python3 - "$WORK/telemetry.json" <<'EOF'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
for stat in ("mean", "median"):
    off = results["off"][stat]
    for name in [n for n in ("live", "dead", "nats") if n in results]:
        r = results[name][stat]
        print(f"{name} / off ({stat}) = {r / off:.3f}  ({r * 1000:.1f} ms vs {off * 1000:.1f} ms)")
EOF

# Cross-check against drift on a shared machine: the commands interleaved, round by
# round (hyperfine runs all of one command before the next), medians of wall time.
echo
echo "interleaved, $RUNS rounds (median ms):"
for _ in $(seq "$RUNS"); do
  for mode in off live dead ${NATS_PID:+nats}; do
    case $mode in
      off) extra=() ;;
      live) extra=(--telemetry "mqtt://127.0.0.1:$LIVE") ;;
      dead) extra=(--telemetry "mqtt://127.0.0.1:$DEAD") ;;
      nats) extra=(--telemetry "nats://127.0.0.1:$NATS_PORT") ;;
    esac
    start=$(date +%s%N)
    $RUN "${extra[@]}" >/dev/null 2>&1
    echo "$mode $((($(date +%s%N) - start) / 1000))" >>"$WORK/interleaved"
  done
done
python3 - "$WORK/interleaved" <<'EOF'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    mode, us = line.split()
    times.setdefault(mode, []).append(int(us) / 1000)
off = statistics.median(times["off"])
print(f"off {off:.1f}")
for name in [n for n in ("live", "dead", "nats") if n in times]:
    m = statistics.median(times[name])
    print(f"{name} {m:.1f}  ({name} / off = {m / off:.3f})")
EOF

# One more live run with a subscriber: every transition must have gone out.
"$CASCADE" observe --broker "mqtt://127.0.0.1:$LIVE" --output json --exit-after-runs 1 \
  >"$WORK/observed" 2>"$WORK/observe.err" &
OBSERVE_PID=$!
for _ in $(seq 50); do
  grep -q observing "$WORK/observe.err" 2>/dev/null && break
  sleep 0.1
done
$RUN --telemetry "mqtt://127.0.0.1:$LIVE" >/dev/null
wait "$OBSERVE_PID"
echo "a subscriber received $(wc -l <"$WORK/observed") messages from one live run (500 jobs: 1502 transitions)"
