#!/usr/bin/env bash
# The local engine against ninja and make on the same no-op DAGs, in one run:
#   fanout : 500 independent `true` jobs
#   layered: 50 layers x 10 jobs, each layer needing all of the previous one
# Prints hyperfine's tables (wall time, ratios) and the peak RSS of `cascade run`.
# Usage: benches/engine.sh [RUNS]   (installs ninja-build and hyperfine if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
JOBS=$(nproc)
for tool in ninja hyperfine; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ninja-build hyperfine; break; }
done
cargo build --release --locked -p cascade-cli >&2
CASCADE=$PWD/target/release/cascade
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 ../shared/bench/gen.py "$WORK" --fan 500 --layers 50 --width 10 >&2
for shape in fanout layered; do
  python3 benches/dag2ci.py "$WORK/$shape/dag.json" "$WORK/$shape/ci.yaml"
  "$CASCADE" validate "$WORK/$shape/ci.yaml" >&2
done
export CASCADE_DATA_DIR=$WORK/data
for shape in fanout layered; do
  echo "## $shape (500 jobs, -j$JOBS)"
  hyperfine --style basic --warmup 2 --runs "$RUNS" -N \
    --export-markdown "$WORK/$shape.md" \
    --command-name ninja "ninja -C $WORK/$shape -j$JOBS" \
    --command-name make "make -C $WORK/$shape -j$JOBS -s" \
    --command-name cascade "$CASCADE run $WORK/$shape/ci.yaml -j$JOBS --output json" \
    >&2
  cat "$WORK/$shape.md"
  # Peak RSS of cascade, three runs, the largest.
  peak=0
  for _ in 1 2 3; do
    /usr/bin/time -f '%M' -o "$WORK/rss" "$CASCADE" run "$WORK/$shape/ci.yaml" -j"$JOBS" --output json >/dev/null
    kb=$(tail -1 "$WORK/rss")
    ((kb > peak)) && peak=$kb
  done
  echo
  echo "peak RSS of cascade run ($shape): $((peak / 1024)) MiB"
  echo
done
