"""The runner starts lean: a sync task's process imports neither asyncio nor typing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SOURCE = """\
import cascade as cs


@cs.task
def noop() -> None:
    return None


@cs.task
async def anoop() -> int:
    return 7
"""


def modules_of(stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def imported(tmp_path: Path, entry: str, is_async: bool) -> tuple[set[str], str]:
    """What the task process imported beyond what the bare interpreter (its `site`) does."""
    (tmp_path / "noop.py").write_text(SOURCE)
    output = tmp_path / "out.txt"
    env = dict(os.environ)
    env["CSPY_TASK"] = json.dumps({"entry": entry, "args": {}, "async": is_async})
    env["CASCADE_OUTPUT"] = str(output)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cascade.runner"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    bare = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return modules_of(proc.stderr) - modules_of(bare.stderr), output.read_text()


def test_sync_task_imports_neither_asyncio_nor_typing(tmp_path: Path) -> None:
    modules, output = imported(tmp_path, "noop.py:noop", False)
    assert "cascade._graph" in modules  # the listing is real
    assert "asyncio" not in modules
    assert "typing" not in modules
    assert "inspect" not in modules
    lines = output.splitlines()
    assert lines[0].startswith("result<<CASCADE_EOF_") and lines[1] == "null"
    assert lines[2] == lines[0].removeprefix("result<<")


def test_async_task_runs_in_asyncio(tmp_path: Path) -> None:
    modules, output = imported(tmp_path, "noop.py:anoop", True)
    assert "asyncio" in modules
    assert output.splitlines()[1] == "7"
