"""`python -m cascade.runner` through the real `cascade run`, on rendered documents."""

from __future__ import annotations

from conftest import Project

TASKS = """
import asyncio
import os
import time
from pathlib import Path

import cascade as cs


@cs.task
def produce(n: int) -> list[str]:
    print("PRINTED_BY_PRODUCE")
    return [f"p{i}" for i in range(n)]


@cs.task
async def shout(name: str, suffix: str = "!") -> str:
    await asyncio.sleep(0.01 * (3 - int(name[1:]) if name[1:].isdigit() else 0))
    return name.upper() + suffix


@cs.task
def join(results: list[str]) -> str:
    return ",".join(results)


@cs.task
def count(results: list[str]) -> int:
    return len(results)


@cs.task
def inc(x: int) -> int:
    return x + 1


@cs.task
def half(x: float) -> float:
    return x / 2


@cs.task
def boom(x: int) -> int:
    raise RuntimeError(f"boom {x}")


@cs.task
async def aboom() -> int:
    await asyncio.sleep(0)
    raise ValueError("async boom")


@cs.task(retry=cs.Retry(limit=2, backoff="10ms"))
def flaky(marker: str) -> int:
    path = Path(marker)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts == 1:
        raise RuntimeError("first attempt fails")
    return attempts


@cs.task(timeout="1s")
def sleepy() -> str:
    time.sleep(30)
    return "late"


@cs.task(name="no_json")
def not_json() -> object:
    return {1, 2}


@cs.task
def greet(who: str, times: int) -> str:
    return " ".join([f"hi {who}"] * times)
"""


def pipelines(body: str) -> str:
    return TASKS + "\n" + body


def test_outputs_flow_between_tasks_and_print_is_only_log(project: Project) -> None:
    project.write(
        "p.py",
        pipelines(
            """
def chain():
    return half(inc(inc(1)))
"""
        ),
    )
    run = project.run("p.py:chain")
    assert run.code == 0, run.output
    assert run.result("inc") == 2
    assert run.result("inc_2") == 3
    assert run.result("half") == 1.5


def test_map_over_a_lazy_list_and_fan_in_in_item_order(project: Project) -> None:
    project.write(
        "p.py",
        pipelines(
            """
def fan():
    return join(shout.map(name=produce(4)))
"""
        ),
    )
    run = project.run("p.py:fan")
    assert run.code == 0, run.output
    assert run.result("produce") == ["p0", "p1", "p2", "p3"]
    assert run.result("shout[2]") == "P2!"
    # Items finish in reverse order (p0 sleeps longest); the fan-in keeps item order.
    assert run.result("join") == "P0!,P1!,P2!,P3!"
    logs = run.logs("produce")
    assert "PRINTED_BY_PRODUCE" in logs
    assert "PRINTED_BY_PRODUCE" not in str(run.tasks["produce"]["outputs"])


def test_empty_map_gives_the_fan_in_an_empty_list(project: Project) -> None:
    project.write(
        "p.py",
        pipelines(
            """
def empty():
    return count(shout.map(name=produce(0)))
"""
        ),
    )
    run = project.run("p.py:empty")
    assert run.code == 0, run.output
    assert run.state("shout") == "skipped"
    assert run.result("count") == 0


def test_zip_of_a_lazy_list_and_a_literal_list(project: Project) -> None:
    project.write(
        "p.py",
        pipelines(
            """
def zipped():
    return join(shout.map(name=produce(2), suffix=["?", "."]))

def unequal():
    return join(shout.map(name=produce(3), suffix=["?", "."]))
"""
        ),
    )
    run = project.run("p.py:zipped")
    assert run.code == 0, run.output
    assert run.result("join") == "P0?,P1."
    bad = project.run("p.py:unequal")
    assert bad.code != 0
    assert bad.state("shout_zip") == "failed"
    assert "must have equal lengths: 'name' has 3, 'suffix' has 2 items" in bad.logs("shout_zip")
    assert bad.state("join") == "skipped"


def test_literal_map_and_params(project: Project) -> None:
    project.write(
        "p.py",
        pipelines(
            """
def literal():
    return join(greet.map(who=["ann", "bob"], times=cs.unmapped(cs.Param("times", default=1))))
"""
        ),
    )
    run = project.run("p.py:literal")
    assert run.code == 0, run.output
    assert run.result("join") == "hi ann,hi bob"
    again = project.run("p.py:literal", "--input", "times=2")
    assert again.code == 0, again.output
    assert again.result("join") == "hi ann hi ann,hi bob hi bob"


def test_type_mismatch_names_the_parameter_and_both_types(project: Project) -> None:
    project.write(
        "p.py",
        pipelines(
            """
def mismatch():
    return inc(join(["a", "b"]))
"""
        ),
    )
    run = project.run("p.py:mismatch")
    assert run.code != 0
    assert run.state("inc") == "failed"
    assert "argument 'x' of task 'inc' expects int, found str (\"a,b\")" in run.logs("inc")


def test_task_exception_fails_the_run_and_skips_dependents(project: Project) -> None:
    project.write(
        "p.py",
        pipelines(
            """
def failing():
    return inc(boom(1))

def failing_async():
    return aboom()
"""
        ),
    )
    run = project.run("p.py:failing")
    assert run.code != 0
    assert run.state("boom") == "failed"
    assert run.state("inc") == "skipped"
    logs = run.logs("boom")
    assert "RuntimeError: boom 1" in logs
    assert "Traceback" in logs
    assert "cascade/runner.py" not in logs
    async_logs = project.run("p.py:failing_async").logs("aboom")
    assert "ValueError: async boom" in async_logs
    assert "asyncio" not in async_logs.replace("await asyncio.sleep(0)", "")


def test_retry_runs_the_task_again(project: Project) -> None:
    project.write(
        "p.py",
        pipelines(
            """
def retried():
    return flaky("attempts.txt")
"""
        ),
    )
    run = project.run("p.py:retried")
    assert run.code == 0, run.output
    assert (project.root / "attempts.txt").read_text() == "2"
    assert run.result("flaky") == 2
    assert run.tasks["flaky"]["attempt"] == 2


def test_timeout_stops_the_task(project: Project) -> None:
    project.write(
        "p.py",
        pipelines(
            """
def slow():
    return inc(sleepy())
"""
        ),
    )
    run = project.run("p.py:slow")
    assert run.code != 0
    assert run.state("sleepy") == "failed"
    assert "timed out" in (run.tasks["sleepy"]["error"] or "") + run.output
    assert run.state("inc") == "skipped"


def test_a_return_value_that_is_not_json_fails_naming_its_type(project: Project) -> None:
    project.write(
        "p.py",
        pipelines(
            """
def bad():
    return not_json()
"""
        ),
    )
    run = project.run("p.py:bad")
    assert run.code != 0
    # The task's name (name=), as the job id says, not the function's.
    assert "task 'no_json' returned a set, which is not JSON" in run.logs("no_json")


def test_tasks_from_an_imported_module_next_to_the_pipeline(project: Project) -> None:
    project.write("ci/helpers.py", TASKS)
    project.write(
        "ci/pipeline.py",
        """
from helpers import inc, join, shout, produce

def main():
    return join(shout.map(name=produce(2), suffix=cs_unmapped("-")))

import cascade as cs
cs_unmapped = cs.unmapped
""",
    )
    rendered = project.render("ci/pipeline.py:main")
    assert rendered.code == 0, rendered.stderr
    assert (
        '"entry":"helpers:produce","args":{"n":{"kind":"const","value":2}},"async":false,"path":"ci"'
        in str(rendered.document["jobs"]["produce"]["env"]["CSPY_TASK"])
    )
    run = project.run("ci/pipeline.py:main")
    assert run.code == 0, run.output
    assert run.result("join") == "P0-,P1-"


def test_a_constant_holding_an_expression_reaches_the_task_as_text(project: Project) -> None:
    project.write(
        "p.py",
        pipelines(
            """
def dollar():
    return join(["${{ secrets.NOPE }}", "}} ${{ inputs.x"])

def dollar_items():
    return join(shout.map(name=["${{ item }}", "x"], suffix=cs.unmapped("${{")))
"""
        ),
    )
    run = project.run("p.py:dollar")
    assert run.code == 0, run.output
    assert run.result("join") == "${{ secrets.NOPE }},}} ${{ inputs.x"
    items = project.run("p.py:dollar_items")
    assert items.code == 0, items.output
    assert items.result("join") == "${{ ITEM }}${{,X${{"


def test_map_over_a_map_and_over_a_param(project: Project) -> None:
    project.write(
        "p.py",
        pipelines(
            """
def map_of_map():
    first = shout.map(name=produce(2), suffix=cs.unmapped("1"))
    return join(shout.map(name=first))

def over_param():
    return join(greet.map(who=cs.Param("who", default=["x", "y"]), times=cs.unmapped(1)))
"""
        ),
    )
    run = project.run("p.py:map_of_map")
    assert run.code == 0, run.output
    assert [run.result("shout[0]"), run.result("shout[1]")] == ["P01", "P11"]
    assert run.result("join") == "P01!,P11!"
    default = project.run("p.py:over_param")
    assert default.code == 0, default.output
    assert default.result("join") == "hi x,hi y"
    given = project.run("p.py:over_param", "--input", 'who=["ann"]')
    assert given.code == 0, given.output
    assert given.result("join") == "hi ann"
