#!/usr/bin/env python3
"""Floor (b): a fresh interpreter per task (`python3 -c`, this script's interpreter),
which imports the task module, reads its argument as JSON from argv and prints its
result as JSON.

usage: floor_fresh.py w1|w2 [--jobs N]
  w1: the producer, one interpreter per item (N in flight, default 2 = the cores), the
      fan-in (its argument, 1000 results, travels through stdin).
  w2: the chain, one interpreter per task, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import workload

HERE = os.path.dirname(os.path.abspath(__file__))
TASK = (
    "import json, sys, workload; "
    "arg = json.loads(sys.stdin.read()); "
    "fn = getattr(workload, sys.argv[1]); "
    "print(json.dumps(fn() if arg is None else fn(arg)))"
)


def _start(fn: str, arg: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", TASK, fn],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(arg).encode())
    proc.stdin.close()
    return proc


def _finish(proc: subprocess.Popen[bytes]) -> Any:
    assert proc.stdout is not None
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise SystemExit("a task interpreter failed")
    return json.loads(out)


def run_one(fn: str, arg: Any = None) -> Any:
    return _finish(_start(fn, arg))


def map_fresh(fn: str, items: list[Any], jobs: int) -> list[Any]:
    results: list[Any] = [None] * len(items)
    running: list[tuple[int, subprocess.Popen[bytes]]] = []
    next_index = 0
    while next_index < len(items) or running:
        while next_index < len(items) and len(running) < jobs:
            running.append((next_index, _start(fn, items[next_index])))
            next_index += 1
        # Wait for whichever ends first (os.wait), then collect it.
        pid, status = os.waitpid(-1, 0)
        for k, (index, proc) in enumerate(running):
            if proc.pid == pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                assert proc.stdout is not None
                out = proc.stdout.read()
                if proc.returncode != 0:
                    raise SystemExit("a task interpreter failed")
                results[index] = json.loads(out)
                del running[k]
                break
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=["w1", "w2"])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    if args.workload == "w1":
        items = run_one("produce")
        results = map_fresh("noop", items, args.jobs)
        workload.check_w1(run_one("fanin", results))
    else:
        value = 0
        for _ in range(workload.CHAIN):
            value = run_one("inc", value)
        workload.check_w2(value)


if __name__ == "__main__":
    main()
