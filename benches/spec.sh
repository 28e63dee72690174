#!/usr/bin/env bash
# Hostile and large inputs to `cascade validate`, timed as whole processes with
# hyperfine, and peak memory with /usr/bin/time, against parsing a plain 200-job file
# in the same run:
#   plain   : a valid 200-job pipeline
#   bomb    : a YAML alias bomb (9 levels of 9 aliases; 387 million strings if expanded)
#   oversize: a 2 MiB file (refused before parsing)
# Usage: benches/spec.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
command -v hyperfine >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine; }
cargo build --release --locked -p cascade-cli >&2
CASCADE=$PWD/target/release/cascade
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK" <<'PY'
import sys
w = sys.argv[1]
lines = ["name: plain", "jobs:"]
for i in range(200):
    needs = f", needs: [j{i-1}]" if i else ""
    lines.append(f'  j{i}: {{ run: "echo ${{{{ matrix.x }}}}", matrix: {{ x: [a, b] }}{needs} }}')
open(f"{w}/plain.yaml", "w").write("\n".join(lines) + "\n")
bomb = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
for l in range(1, 10):
    bomb.append(f"a{l}: &a{l} [" + ",".join([f"*a{l-1}"] * 9) + "]")
bomb.append("jobs: { a: { run: make } }")
open(f"{w}/bomb.yaml", "w").write("\n".join(bomb) + "\n")
open(f"{w}/oversize.yaml", "w").write("jobs: { a: { run: make } }\n#" + "x" * (2 << 20) + "\n")
PY
hyperfine --style basic -N --warmup 3 --runs "$RUNS" -i \
  --export-markdown "$WORK/spec.md" \
  --command-name plain-200-jobs "$CASCADE validate $WORK/plain.yaml" \
  --command-name alias-bomb "$CASCADE validate $WORK/bomb.yaml" \
  --command-name oversize-2MiB "$CASCADE validate $WORK/oversize.yaml" >&2
cat "$WORK/spec.md"
for f in plain bomb oversize; do
  /usr/bin/time -f '%M' -o "$WORK/rss" "$CASCADE" validate "$WORK/$f.yaml" >/dev/null 2>&1 || true
  echo "peak RSS, validate $f: $(( $(tail -1 "$WORK/rss") / 1024 )) MiB"
done
