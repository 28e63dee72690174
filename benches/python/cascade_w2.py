#!/usr/bin/env python3
"""W2 with the Cascade Python SDK (DESIGN §7): a chain of 200 tasks, each taking the
previous result and returning it + 1 (the first takes 0), so the last returns 200.

usage: python3 benches/python/cascade_w2.py       (cs.run on the local engine)
       cascade run benches/python/cascade_w2.py:w2
Run from the repository root: task entry points are file paths relative to the working
directory. Exit 0 only when the chain ends at 200.
"""

from __future__ import annotations

import cascade as cs

CHAIN = 200


@cs.task
def inc(x: int) -> int:
    return x + 1


def w2() -> cs.LazyResult[int]:
    value = inc(0)
    for _ in range(CHAIN - 1):
        value = inc(value)  # jobs inc, inc_2, ... inc_200
    return value


if __name__ == "__main__":
    value = cs.run(w2())
    if value != CHAIN:
        raise SystemExit(f"W2 returned {value!r}, expected {CHAIN}")
