"""The Python pipeline of the Argo tests: a lazy map with a secret, an image, resources,
retry and timeout; a zip of a lazy and a literal list; a literal map; a fan-in of all
three with a parameter. `crates/cascade-argo/tests/fixtures/python.yaml` is its rendered
document (python/tests/test_argo.py checks they agree), so the Rust tests render it to
Argo without Python."""

import cascade as cs


@cs.task
def changed() -> list[str]:
    return ["a", "b"]


@cs.task(
    secrets=["PYPI_TOKEN"],
    image="python:3.11-slim",
    resources={"cpu": 2, "memory": "1Gi"},
    retry=cs.Retry(limit=2),
    timeout=600,
)
def lint(package: str) -> str:
    return package


@cs.task
def build(package: str, flavour: str) -> str:
    return package + flavour


@cs.task
def check(tool: str) -> str:
    return tool


@cs.task
def marker(linted: list[str], built: list[str], checked: list[str], target: str) -> str:
    return ",".join(linted + built + checked) + " -> " + target


def pr() -> cs.LazyResult[str]:
    packages = changed()
    linted = lint.map(package=packages)
    built = build.map(package=packages, flavour=["x", "y"])
    checked = check.map(tool=["ruff", "mypy"])
    return marker(linted, built, checked, cs.Param("target", "prod"))
