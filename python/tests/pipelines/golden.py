"""Pipelines whose rendered documents are committed under python/tests/golden/."""

from __future__ import annotations

import cascade as cs


@cs.task
def hello() -> str:
    return "hello"


@cs.task
def double(x: int) -> int:
    return 2 * x


@cs.task
def add(a: int, b: int = 0) -> int:
    return a + b


@cs.task
def total(values: list[int]) -> int:
    return sum(values)


@cs.task
def packages() -> list[str]:
    return ["a", "b"]


@cs.task
async def lint(package_name: str, strict: bool = False) -> str:
    return f"LINT_OK_{package_name}"


@cs.task
def marker(results: list[str]) -> str:
    return ",".join(results)


@cs.task(
    name="publish_release",
    retry=cs.Retry(limit=2, backoff="5s", max_backoff="1m"),
    timeout="10m",
    secrets=["PYPI_TOKEN"],
    env={"RUST_LOG": "info"},
    image="python:3.12-slim",
)
def publish(results: list[str]) -> str:
    token = cs.Env("TWINE_PASSWORD")
    return f"{len(token)}:{len(results)}"


@cs.task(runner="small", timeout=90)
def on_runner() -> None:
    return None


@cs.task(resources={"cpu": 2, "memory": "4Gi"})
def heavy() -> int:
    return 1


@cs.task
def echo(text: str, extra: dict[str, str] | None = None) -> str:
    return text


def single() -> cs.LazyResult[str]:
    return hello()


def chain() -> cs.LazyResult[int]:
    return double(double(add(1, b=2)))


def literal_map() -> cs.LazyResult[int]:
    doubled = double.map(x=[1, 2, 3])
    summed = add.map(a=[1, 2], b=[10, 20])
    return total(doubled).after(summed)


def lazy_map_fanin() -> cs.LazyResult[str]:
    linted = lint.map(package_name=packages(), strict=cs.unmapped(True))
    return marker(linted)


def zip_lazy() -> cs.LazyResult[str]:
    linted = lint.map(package_name=packages(), strict=[True, False])
    return marker(linted)


def map_of_map() -> cs.LazyResult[int]:
    doubled = double.map(x=[1, 2])
    again = double.map(x=doubled)
    return total(again)


def ordering() -> cs.LazyResult[str]:
    first = hello()
    second = hello()
    linted = lint.map(package_name=["x"])
    last = marker(["done"]).after(first, second)
    last.after(linted)
    return last


def params() -> cs.LazyResult[str]:
    names = cs.Param("names", default=["a", "b"])
    linted = lint.map(package_name=names, strict=cs.unmapped(cs.Param("strict", default=False)))
    return marker(linted).after(echo(cs.Param("tag")))


def options() -> list[cs.LazyResult[object]]:
    return [publish(["x"]), on_runner()]


def resources() -> cs.LazyResult[int]:
    return heavy()


def dollar() -> cs.LazyResult[str]:
    return echo("${{ secrets.NOPE }}", extra={"k": "}} ${{"}).after(echo.map(text=["${{ item }}"]))
