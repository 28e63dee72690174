"""The floor of the warm-runner benchmark: 1000 forks of a preloaded interpreter.

The interpreter imports cascade and the W1 module first (as a warm runner does), then a
`multiprocessing` fork pool with one task per child (`maxtasksperchild=1`: every call is
a fresh fork) calls the no-op task 1000 times, as many at once as there are CPUs.
"""

import multiprocessing
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import w1  # noqa: E402


def call(item: str) -> str:
    return w1.noop.fn(item)


if __name__ == "__main__":
    items = w1.produce.fn()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes=os.cpu_count() or 1, maxtasksperchild=1) as pool:
        results = pool.map(call, items, chunksize=1)
    assert len(results) == w1.N, len(results)
