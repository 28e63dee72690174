#!/usr/bin/env python3
"""Writes W1 and W2 as plain-shell Cascade pipelines (ci.yaml), to time the engine
without Python in the tasks: OUTDIR/w1.yaml and OUTDIR/w2.yaml.

W1: `produce` prints the 1000 items as a JSON list (`outputs: {list: stdout-json}`),
    `noop` fans out over `${{ needs.produce.outputs.list }}` and echoes its item
    (`outputs: {r: stdout}`), `fanin` receives the list of item results through
    `toJSON(needs.noop.outputs.r)` and fails unless it equals the produced list.
W2: `inc`, `inc_2`, ... `inc_200` (the job ids the Python SDK gives 200 calls of `inc`):
    each echoes the previous job's output + 1 (`inc` starts from 0); the last one fails
    unless it reaches 200.

usage: cascade_yaml.py OUTDIR
"""

from __future__ import annotations

import os
import sys

import workload

W1 = f"""\
name: w1
jobs:
  produce:
    run: seq -f '"item-%g"' 0 {workload.N_ITEMS - 1} | paste -sd, | sed 's/.*/[&]/'
    outputs: {{ list: stdout-json }}
  noop:
    needs: [produce]
    for_each: ${{{{ needs.produce.outputs.list }}}}
    run: echo ${{{{ item }}}}
    outputs: {{ r: stdout }}
  fanin:
    needs: [produce, noop]
    env:
      RESULTS: "${{{{ toJSON(needs.noop.outputs.r) }}}}"
      ITEMS: "${{{{ toJSON(needs.produce.outputs.list) }}}}"
    run: test "$RESULTS" = "$ITEMS"
"""


def w2() -> str:
    lines = ["name: w2", "jobs:"]
    for i in range(1, workload.CHAIN + 1):
        job = "inc" if i == 1 else f"inc_{i}"
        previous = "inc" if i == 2 else f"inc_{i - 1}"
        value = '"0"' if i == 1 else f'"${{{{ needs.{previous}.outputs.v }}}}"'
        needs = "" if i == 1 else f", needs: [{previous}]"
        run = "echo $((V + 1))"
        if i == workload.CHAIN:
            run = f'v=$((V + 1)); echo "$v"; test "$v" -eq {workload.CHAIN}'
        lines.append(
            f"  {job}: {{ env: {{ V: {value} }}, run: '{run}', outputs: {{ v: stdout }}{needs} }}"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: cascade_yaml.py OUTDIR")
    os.makedirs(sys.argv[1], exist_ok=True)
    with open(os.path.join(sys.argv[1], "w1.yaml"), "w") as f:
        f.write(W1)
    with open(os.path.join(sys.argv[1], "w2.yaml"), "w") as f:
        f.write(w2())
