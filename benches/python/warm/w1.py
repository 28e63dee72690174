"""W1 for the warm-runner benchmark: one producer of 1000 strings, a no-op task mapped
over them, one fan-in (`cascade run benches/python/warm/w1.py:w1`)."""

import cascade as cs

N = 1000


@cs.task
def produce() -> list[str]:
    return [f"item-{i}" for i in range(N)]


@cs.task
def noop(item: str) -> str:
    return item


@cs.task
def count(results: list[str]) -> int:
    return len(results)


def w1() -> cs.LazyResult[int]:
    return count(noop.map(item=produce()))
