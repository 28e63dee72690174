#!/usr/bin/env python3
"""Writes Cascade's form of a peer-benchmark DAG: dag.json ({task: [deps]}) -> ci.yaml,
one no-op job (`run: "true"`) per task, `needs:` for edges."""
import json
import sys

dag = json.load(open(sys.argv[1]))
lines = ["name: bench", "jobs:"]
for task, deps in dag.items():
    needs = f", needs: [{', '.join(deps)}]" if deps else ""
    lines.append(f'  {task}: {{ run: "true"{needs} }}')
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
