#!/usr/bin/env bash
# W1 and W2 of issue 15 on every system side by side, in one run (see README.md):
# the peers (Prefect 3, Dask, Luigi), the two floors and Cascade.
# Usage: benches/python/run.sh [run.py options: --runs N --warmup N --timeout S --only a,b
#        --workloads w1,w2 --json FILE]
# Environment: CASCADE_BIN (default: target/release/cascade, then target/debug/cascade,
# then PATH), PYTHON (floors and the Cascade SDK scripts, default python3), CASCADE_SDK
# (a folder with the `cascade` package when it is not installed, e.g. a checkout's python/).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || ./setup.sh
exec "${PYTHON:-python3}" run.py "$@"
