#!/usr/bin/env bash
# The server tier's targets (issue 5), each beside a baseline in the same run; see
# server.py for what is measured. Usage: benches/server.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v sqlite3 >/dev/null || need+=(sqlite3)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
cargo build --release --locked -p cascade-cli >&2
exec python3 benches/server.py target/release/cascade "$@"
