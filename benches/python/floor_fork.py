#!/usr/bin/env python3
"""Floor (a): one fork of this already-warm interpreter per task, the task module
imported before the first fork, results sent back as JSON through a pipe.

usage: floor_fork.py w1|w2 [--pool] [--jobs N]
  w1: the producer, one fork per item (N in flight, default 2 = the cores), the fan-in.
  w2: the chain, one fork per task, one after the other.
  --pool: the same through multiprocessing's fork context, Pool(N, maxtasksperchild=1),
          so every task still gets a freshly forked worker (pickling and the pool's
          threads included).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
from collections.abc import Callable
from typing import Any

import workload  # preloaded: every fork starts with it imported


def _start(fn: Callable[[Any], Any], arg: Any) -> tuple[int, int]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            data = json.dumps(fn(arg) if arg is not None else fn()).encode()
            os.write(write, data)  # results here are < 64 KiB: one write, never blocks
            os._exit(0)
        except BaseException:  # any failure is exit 1
            os._exit(1)
    os.close(write)
    return pid, read


def _finish(pid: int, read: int) -> Any:
    _, status = os.waitpid(pid, 0)
    return _collect(status, read)


def _collect(status: int, read: int) -> Any:
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("a forked task failed")
    return json.loads(b"".join(chunks))


def run_one(fn: Callable[[Any], Any], arg: Any = None) -> Any:
    return _finish(*_start(fn, arg))


def map_forks(fn: Callable[[Any], Any], items: list[Any], jobs: int) -> list[Any]:
    results: list[Any] = [None] * len(items)
    running: dict[int, tuple[int, int]] = {}  # pid -> (index, read fd)
    next_index = 0
    while next_index < len(items) or running:
        while next_index < len(items) and len(running) < jobs:
            pid, read = _start(fn, items[next_index])
            running[pid] = (next_index, read)
            next_index += 1
        pid, status = os.wait()
        index, read = running.pop(pid)
        results[index] = _collect(status, read)
    return results


def forks(workload_name: str, jobs: int) -> object:
    if workload_name == "w1":
        items = run_one(workload.produce)
        results = map_forks(workload.noop, items, jobs)
        return run_one(workload.fanin, results)
    value = 0
    for _ in range(workload.CHAIN):
        value = run_one(workload.inc, value)
    return value


def pool(workload_name: str, jobs: int) -> object:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs, maxtasksperchild=1) as p:
        if workload_name == "w1":
            items = p.apply(workload.produce)
            results = p.map(workload.noop, items, chunksize=1)
            return p.apply(workload.fanin, (results,))
        value = 0
        for _ in range(workload.CHAIN):
            value = p.apply(workload.inc, (value,))
        return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=["w1", "w2"])
    parser.add_argument("--pool", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    value = (pool if args.pool else forks)(args.workload, args.jobs)
    (workload.check_w1 if args.workload == "w1" else workload.check_w2)(value)


if __name__ == "__main__":
    main()
