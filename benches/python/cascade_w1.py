#!/usr/bin/env python3
"""W1 with the Cascade Python SDK (DESIGN §7): one producer returning 1000 strings, a
mapped no-op task per item, one fan-in that receives the item results in item order.

usage: python3 benches/python/cascade_w1.py       (cs.run on the local engine)
       cascade run benches/python/cascade_w1.py:w1
Run from the repository root: task entry points are file paths relative to the working
directory. Exit 0 only when the fan-in saw all 1000 results in order.
"""

from __future__ import annotations

import cascade as cs

N_ITEMS = 1000


@cs.task
def produce() -> list[str]:
    return [f"item-{i}" for i in range(N_ITEMS)]


@cs.task
def noop(item: str) -> str:
    return item


@cs.task
def fanin(results: list[str]) -> int:
    if results != [f"item-{i}" for i in range(N_ITEMS)]:
        raise AssertionError("fan-in did not receive the item results in item order")
    return len(results)


def w1() -> cs.LazyResult[int]:
    return fanin(noop.map(item=produce()))


if __name__ == "__main__":
    value = cs.run(w1())
    if value != N_ITEMS:
        raise SystemExit(f"W1 returned {value!r}, expected {N_ITEMS}")
