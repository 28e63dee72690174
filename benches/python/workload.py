"""The logical work of the two benchmark DAGs, as plain functions (no framework).

W1: `produce()` returns N_ITEMS strings, `noop(item)` runs once per item and returns it,
    `fanin(results)` receives the item results in item order and returns how many.
W2: a CHAIN-long chain; task 0 receives 0, each task returns its input + 1, so the last
    result is CHAIN.

Every system's script builds these DAGs in its own way and calls `check_w1` / `check_w2`
on what its DAG returned, so a run that skipped work or reordered items fails (exit 1).
The floors import this module before forking, as a warm runner would.
"""

from __future__ import annotations

N_ITEMS = 1000
CHAIN = 200


def produce() -> list[str]:
    return [f"item-{i}" for i in range(N_ITEMS)]


def noop(item: str) -> str:
    return item


def fanin(results: list[str]) -> int:
    if results != produce():
        raise AssertionError("fan-in did not receive the item results in item order")
    return len(results)


def inc(x: int) -> int:
    return x + 1


def check_w1(value: object) -> None:
    if value != N_ITEMS:
        raise SystemExit(f"W1 returned {value!r}, expected {N_ITEMS}")


def check_w2(value: object) -> None:
    if value != CHAIN:
        raise SystemExit(f"W2 returned {value!r}, expected {CHAIN}")
