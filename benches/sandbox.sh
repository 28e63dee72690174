#!/usr/bin/env bash
# What the job sandbox costs at start: the same N no-op jobs (`run: "true"`, independent)
# with `cascade run` and with `cascade run --sandbox` (bubblewrap), side by side in one
# hyperfine run. Prints hyperfine's table, then the added milliseconds per job and the
# ratio of the means.
# Usage: benches/sandbox.sh [JOBS] [RUNS]   (installs hyperfine and bubblewrap if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
RUNS=${2:-10}
JOBS=$(nproc)
for tool in hyperfine bwrap; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine bubblewrap; break; }
done
cargo build --release --locked -p cascade-cli >&2
CASCADE=$PWD/target/release/cascade
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
{
  echo "jobs:"
  for i in $(seq "$N"); do echo "  j$i: { run: \"true\" }"; done
} >"$WORK/ci.yaml"
"$CASCADE" validate "$WORK/ci.yaml" >&2
export CASCADE_DATA_DIR=$WORK/data
cd "$WORK"
echo "## $N no-op jobs, -j$JOBS"
hyperfine --style basic --warmup 2 --runs "$RUNS" -N \
  --export-markdown "$WORK/sandbox.md" --export-json "$WORK/sandbox.json" \
  --command-name plain "$CASCADE run ci.yaml -j$JOBS --output json" \
  --command-name sandbox "$CASCADE run ci.yaml -j$JOBS --output json --sandbox" \
  >&2
cat "$WORK/sandbox.md"
python3 - "$WORK/sandbox.json" "$N" <<'EOF'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
n = int(sys.argv[2])
plain, boxed = results["plain"]["mean"], results["sandbox"]["mean"]
print(f"\nadded per job: {(boxed - plain) / n * 1000:.2f} ms; sandbox / plain: {boxed / plain:.2f}")
EOF
