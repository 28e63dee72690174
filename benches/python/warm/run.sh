#!/usr/bin/env bash
# Warm Python runners: `cascade run` of W1 (a producer of 1000 strings, a no-op Python
# task mapped over them, a fan-in) started warm (the default: each task a fork of a
# server that imported w1.py) and cold (`--cold`: a fresh interpreter per task), beside
# the floor: 1000 forks of a preloaded interpreter (forkpool.py, a multiprocessing fork
# pool with one task per child). One hyperfine run: read the ratios.
#
# usage: benches/python/warm/run.sh [RUNS]   (CASCADE_BIN: the binary, default `cascade`;
# the `cascade` package must be importable by python3: an installed wheel or
# PYTHONPATH=python)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
runs="${1:-5}"
bin="${CASCADE_BIN:-cascade}"
py="$(command -v python3)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/w1.py" "$work/"
cd "$work"
# The job's python3 is this interpreter itself, not a launcher script (a pyenv shim
# costs more than the interpreter's start), as cs.run arranges.
export PATH="$(dirname "$py"):$PATH"
hyperfine --runs "$runs" --warmup 1 \
  -n fork-pool "$py $here/forkpool.py" \
  -n warm "$bin run w1.py:w1 --data-dir $work/.cascade" \
  -n cold "$bin run w1.py:w1 --data-dir $work/.cascade --cold"
