#!/usr/bin/env python3
"""W1/W2 of the Python SDK as the binary will run `cascade run benches/python/cascade_wN.py:wN`:
the pipeline rendered by the SDK (`cs.render`, the document of `python3 -m cascade render`),
written as a pipeline file, then `cascade run` of it, the tasks started by
`python3 -m cascade.runner` as the document says; then the target job's result is read from
the run's record (`cascade.db`) and checked. Needs only `cs.render` and the runner, so it
runs before `cs.run` lands.

usage (from the repository root): cascade_rendered.py w1|w2 DATA_DIR
The binary: $CASCADE_BIN, else `cascade` on PATH. The jobs' `python3` is this interpreter
(its folder first on PATH, as cs.run does).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import cascade as cs

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("w1", "w2"):
        raise SystemExit("usage: cascade_rendered.py w1|w2 DATA_DIR")
    workload, data_dir = sys.argv[1], sys.argv[2]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import importlib

    module = importlib.import_module(f"cascade_{workload}")
    document = cs.render(getattr(module, workload)())
    os.makedirs(data_dir, exist_ok=True)
    # .yaml, not .json: `cascade run` reads a .json file as a DAG submission; a pipeline
    # document in JSON is valid YAML.
    path = os.path.join(data_dir, f"{workload}.yaml")
    with open(path, "w") as f:
        json.dump(document, f)
    binary = os.environ.get("CASCADE_BIN") or shutil.which("cascade")
    if not binary:
        raise SystemExit("no cascade binary: set CASCADE_BIN or put cascade on PATH")
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    argv = [binary, "run", path, "--data-dir", data_dir, "-j2", "--output", "json"]
    if subprocess.run(argv, stdout=subprocess.DEVNULL).returncode != 0:
        raise SystemExit("cascade run failed")
    # The target is the job no other job needs (the last one built).
    jobs = document["jobs"]
    needed = {n for job in jobs.values() for n in job.get("needs", [])}
    (target,) = [j for j in jobs if j not in needed]
    with sqlite3.connect(os.path.join(data_dir, "cascade.db")) as db:
        row = db.execute(
            "SELECT output FROM task_executions WHERE task_id = ? "
            "ORDER BY finished_at DESC LIMIT 1",
            (target,),
        ).fetchone()
    value = json.loads(json.loads(row[0])["result"]) if row and row[0] else None
    expected = module.N_ITEMS if workload == "w1" else module.CHAIN
    if value != expected:
        raise SystemExit(f"{workload} returned {value!r}, expected {expected}")
