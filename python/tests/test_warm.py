"""Warm runners through the real `cascade run`: Python tasks start as forks of a server
that imported their module (one per module), give what `--cold` gives, get only their
own environment, and die with the run however it ends (cancel, kill -9)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import Project, cascade_bin, env_for_runs, write_document

TASKS = """
import json
import os
import subprocess
import time

import cascade as cs


def where(tag):
    # Which process ran the task and which one forked it, for the test to read.
    with open(f"where-{tag}.json", "w") as out:
        json.dump({"pid": os.getpid(), "parent": os.getppid()}, out)


@cs.task
def produce(n: int) -> list[str]:
    where("produce")
    return [f"p{i}" for i in range(n)]


@cs.task
def shout(name: str) -> str:
    where(name)
    print(f"shouting {name}")
    return name.upper()


@cs.task
def join(parts: list[str]) -> str:
    where("join")
    return "+".join(parts)


@cs.task
def inc(x: int) -> int:
    return x + 1


@cs.task(secrets=["WARM_TOKEN"])
def holder() -> bool:
    where("holder")
    return os.environ.get("WARM_TOKEN") == "s3cr3t-value"


@cs.task
def other() -> list[str]:
    where("other")
    with open("/proc/self/environ", "rb") as f:
        raw = f.read()
    return [name for name in ("WARM_TOKEN",) if name in os.environ or name.encode() in raw]


@cs.task
def hang(tag: str) -> str:
    child = subprocess.Popen(["sleep", "300"])
    with open(f"hang-{tag}.json", "w") as out:
        json.dump({"pid": os.getpid(), "parent": os.getppid(), "grandchild": child.pid}, out)
    time.sleep(300)
    return "late"


def chain():
    return join(shout.map(name=produce(3)))


@cs.task
def pair(a: bool, b: list[str]) -> list[object]:
    return [a, b]


def both():
    return pair(holder(), other())


def hold():
    return [hang("a"), hang("b")]
"""

OTHER_MODULE = """
import json
import os

import cascade as cs


@cs.task
def elsewhere() -> int:
    with open("where-elsewhere.json", "w") as out:
        json.dump({"pid": os.getpid(), "parent": os.getppid()}, out)
    return 7
"""


def where(project: Project, tag: str) -> dict[str, int]:
    data: dict[str, int] = json.loads((project.root / f"where-{tag}.json").read_text())
    return data


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_chain_map_and_fan_in_run_warm_and_cold_alike(project: Project) -> None:
    project.write("p.py", TASKS)
    warm = project.run("p.py:chain")
    assert warm.code == 0, warm.output
    forked = {tag: where(project, tag) for tag in ("produce", "p0", "p1", "p2", "join")}
    cold = project.run("p.py:chain", "--cold")
    assert cold.code == 0, cold.output
    spawned = {tag: where(project, tag) for tag in forked}
    for run in (warm, cold):
        assert run.result("join") == "P0+P1+P2"
        assert [run.result(f"shout[{i}]") for i in range(3)] == ["P0", "P1", "P2"]
        assert "shouting p1" in run.logs("shout")
    # Cold, every task is a child of cascade itself, which is gone by now; warm, the
    # tasks of the module are children of its one fork server, which ended with the run.
    assert len({w["parent"] for w in spawned.values()}) == 1
    servers = {w["parent"] for w in forked.values()}
    assert len(servers) == 1, forked
    assert servers != {w["parent"] for w in spawned.values()}
    assert not any(alive(pid) for pid in servers)


def test_one_server_per_module(project: Project) -> None:
    project.write("p.py", TASKS)
    project.write("other.py", OTHER_MODULE)
    project.write(
        "mix.py",
        """
import cascade as cs
from p import inc, shout
from other import elsewhere


def mix():
    return [shout("x"), shout("y"), inc(elsewhere())]
""",
    )
    run = project.run("mix.py:mix")
    assert run.code == 0, run.output
    assert run.result("inc") == 8
    x, y, elsewhere = (where(project, t) for t in ("x", "y", "elsewhere"))
    assert x["parent"] == y["parent"]
    assert elsewhere["parent"] != x["parent"]
    assert x["pid"] != y["pid"]


def test_a_secret_reaches_only_the_task_that_declared_it(project: Project) -> None:
    project.write("p.py", TASKS)
    (project.root / "secrets.env").write_text("WARM_TOKEN=s3cr3t-value\n")
    run = project.run("p.py:both", "--secrets-file", "secrets.env")
    assert run.code == 0, run.output
    assert run.result("holder") is True
    # Not in its environment, not in the memory its server was started with.
    assert run.result("other") == []
    assert where(project, "holder")["parent"] != where(project, "other")["parent"]
    assert "s3cr3t-value" not in run.output


def test_a_module_failing_to_import_in_the_server_fails_the_task_with_the_error(
    project: Project,
) -> None:
    project.write(
        "bad.py",
        """
import os

import cascade as cs

if os.environ.get("CASCADE_RUN_ID"):
    raise ImportError("only fails inside a run")


@cs.task
def t() -> int:
    return 1


def p():
    return t()
""",
    )
    run = project.run("bad.py:p")
    assert run.code != 0
    assert run.state("t") == "failed"
    logs = run.logs("t")
    assert "ImportError: only fails inside a run" in logs
    assert "no warm Python runner for bad.py" in logs


def start(project: Project, target: str) -> subprocess.Popen[str]:
    rendered = project.render(target)
    assert rendered.code == 0, rendered.stderr
    doc = write_document(rendered.document, project.root / "hold.yaml")
    return subprocess.Popen(
        [cascade_bin(), "run", doc.name, "--data-dir", ".cascade", "-j", "2", "--kill-grace", "1"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env_for_runs(),
    )


def wait_for_hangs(project: Project, proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    files = [project.root / f"hang-{t}.json" for t in ("a", "b")]
    while not all(f.exists() and f.read_text().endswith("}") for f in files):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the tasks did not start"
        time.sleep(0.05)
    return [json.loads(f.read_text()) for f in files]


def pids_of(hangs: list[dict[str, Any]]) -> set[int]:
    return {h[k] for h in hangs for k in ("pid", "parent", "grandchild")}


def wait_gone(pids: set[int], seconds: float = 10) -> set[int]:
    deadline = time.monotonic() + seconds
    left = {p for p in pids if alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {p for p in left if alive(p)}
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return left


def test_ctrl_c_cancels_forked_tasks_and_their_children(project: Project) -> None:
    project.write("p.py", TASKS)
    proc = start(project, "p.py:hold")
    hangs = wait_for_hangs(project, proc)
    assert hangs[0]["parent"] == hangs[1]["parent"] != proc.pid
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0, output
    assert wait_gone(pids_of(hangs)) == set(), output
    assert "cancelled" in output


def test_kill_9_of_cascade_leaves_no_forked_task_and_no_server(project: Project) -> None:
    project.write("p.py", TASKS)
    proc = start(project, "p.py:hold")
    hangs = wait_for_hangs(project, proc)
    pids = pids_of(hangs)
    assert all(alive(p) for p in pids), hangs
    proc.kill()  # SIGKILL: no handler of cascade runs
    proc.communicate(timeout=30)
    assert wait_gone(pids) == set(), hangs
