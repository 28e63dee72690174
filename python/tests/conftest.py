"""Helpers shared by the tests: the real `cascade` binary, the render CLI, and runs.

The tests run against the INSTALLED package (scripts/python-test installs the wheel into
a clean venv): the render CLI and the task processes are this interpreter
(`sys.executable`), and `cascade run` finds `python3` in this interpreter's folder first.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent


def cascade_bin() -> str:
    from cascade._binary import find_binary

    return find_binary()


def env_for_runs() -> dict[str, str]:
    """The environment of a `cascade run`: this interpreter's folder first on PATH, so a
    job's `python3` is the interpreter (and the package) under test."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["NO_COLOR"] = "1"
    return env


class Rendered:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.proc = proc
        self.code = proc.returncode
        self.stderr = proc.stderr
        payload: dict[str, Any] = json.loads(proc.stdout) if proc.returncode == 0 else {}
        self.document: dict[str, Any] = payload.get("document", {})
        self.sources: dict[str, Any] = payload.get("sources", {})


def render_cli(target: str, cwd: Path) -> Rendered:
    """`python -m cascade render TARGET` in `cwd`."""
    proc = subprocess.run(
        [sys.executable, "-m", "cascade", "render", target],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env_for_runs(),
        timeout=60,
    )
    return Rendered(proc)


def write_document(document: dict[str, Any], path: Path) -> Path:
    """The document as a pipeline file (`.yaml`: JSON is YAML; a `.json` file would be
    read as a DAG submission)."""
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], cwd: Path) -> None:
        self.proc = proc
        self.code = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.cwd = cwd
        db = sqlite3.connect(cwd / ".cascade" / "cascade.db")
        try:
            (run_id,) = db.execute(
                "SELECT run_id FROM dag_runs ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
            self.run_id: str = run_id
            rows = db.execute(
                "SELECT task_id, status, attempt, output, error FROM task_executions WHERE run_id = ?",
                (run_id,),
            ).fetchall()
        finally:
            db.close()
        self.tasks: dict[str, dict[str, Any]] = {}
        for task_id, status, attempt, output, error in rows:
            outputs = json.loads(output) if output else {}
            self.tasks[task_id] = {
                "state": status,
                "attempt": attempt,
                "outputs": outputs,
                "error": error,
            }

    def result(self, task_id: str) -> Any:
        """The task's return value (its `result` output, decoded)."""
        text = self.tasks[task_id]["outputs"].get("result")
        assert text is not None, f"{task_id} has no result: {self.tasks[task_id]}\n{self.output}"
        return json.loads(text)

    def state(self, task_id: str) -> str:
        return str(self.tasks[task_id]["state"])

    def logs(self, job: str | None = None) -> str:
        args = [cascade_bin(), "logs", "--data-dir", ".cascade", self.run_id]
        if job is not None:
            args.append(job)
        proc = subprocess.run(
            args, cwd=self.cwd, capture_output=True, text=True, env=env_for_runs(), timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout + proc.stderr


class Project:
    """A temporary folder holding pipeline files, where renders and runs happen."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, name: str, source: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    def render(self, target: str) -> Rendered:
        return render_cli(target, self.root)

    def run(self, target: str, *args: str) -> Run:
        rendered = self.render(target)
        assert rendered.code == 0, rendered.stderr
        doc = write_document(rendered.document, self.root / f"{target.rpartition(':')[2]}.yaml")
        proc = subprocess.run(
            [cascade_bin(), "run", doc.name, "--data-dir", ".cascade", "-j", "2", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env=env_for_runs(),
            timeout=120,
        )
        return Run(proc, self.root)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)
