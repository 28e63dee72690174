#!/usr/bin/env bash
# Creates benches/python/.venv with the peers of the Python-SDK benchmark (prefect 3,
# dask, luigi) at pinned versions (requirements.txt, constraints.txt: the whole tree as
# measured). Run by hand; the project's tests never install these.
# Usage: benches/python/setup.sh [PYTHON]   (default python3; Python >= 3.10)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${1:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt -c constraints.txt
.venv/bin/python -c 'import prefect, dask, luigi; print("prefect", prefect.__version__, "dask", dask.__version__, "luigi", luigi.__version__)'
