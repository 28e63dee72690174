#!/usr/bin/env python3
"""Dask delayed on this machine (no distributed cluster).

usage: peer_dask.py w1|w2 threads|processes
  threads  : Dask's default scheduler for delayed (a thread pool, one thread per core)
  processes: the multiprocessing scheduler, num_workers=2 (the cores)
W1: Dask delayed cannot fan out over a list known only at run time: the producer is a
delayed call with nout=1000 (the length fixed when the graph is built), one delayed noop
per item, one delayed fan-in of the list. W2: 200 chained delayed calls.
"""

from __future__ import annotations

import sys

import dask
from dask import delayed

import workload


def w1() -> object:
    items = delayed(workload.produce, nout=workload.N_ITEMS)()
    results = [delayed(workload.noop)(item) for item in items]
    return delayed(workload.fanin)(results)


def w2() -> object:
    value = delayed(workload.inc)(0)
    for _ in range(workload.CHAIN - 1):
        value = delayed(workload.inc)(value)
    return value


if __name__ == "__main__":
    if (
        len(sys.argv) != 3
        or sys.argv[1] not in ("w1", "w2")
        or sys.argv[2]
        not in (
            "threads",
            "processes",
        )
    ):
        raise SystemExit("usage: peer_dask.py w1|w2 threads|processes")
    graph = w1() if sys.argv[1] == "w1" else w2()
    options = {"num_workers": 2} if sys.argv[2] == "processes" else {}
    (value,) = dask.compute(graph, scheduler=sys.argv[2], **options)
    (workload.check_w1 if sys.argv[1] == "w1" else workload.check_w2)(value)
