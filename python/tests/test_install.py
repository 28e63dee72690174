"""The package under test is the installed wheel, with its binary."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import cascade
import pytest
from cascade._binary import BinaryNotFound, find_binary

REPO_PYTHON = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    os.environ.get("CASCADE_TEST_INSTALLED") != "1",
    reason="scripts/python-test runs this against the wheel",
)
def test_cascade_is_imported_from_the_venv_not_the_source_tree() -> None:
    location = Path(cascade.__file__).resolve()
    assert location.is_relative_to(Path(sys.prefix).resolve()), (location, sys.prefix)
    assert not location.is_relative_to(REPO_PYTHON), location
    assert sys.prefix != sys.base_prefix, "not in a venv"
    assert (location.parent / "py.typed").exists()
    # The wheel's binary is next to the interpreter, and found without CASCADE_BIN.
    binary = Path(sysconfig.get_path("scripts")) / "cascade"
    assert binary.is_file()
    assert "CASCADE_BIN" not in os.environ
    assert find_binary() == str(binary)
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("cascade ")


def test_cascade_bin_wins_and_a_wrong_one_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "cascade-fake"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CASCADE_BIN", str(fake))
    assert find_binary() == str(fake)
    monkeypatch.setenv("CASCADE_BIN", str(tmp_path / "missing"))
    with pytest.raises(BinaryNotFound, match="CASCADE_BIN"):
        find_binary()


def test_missing_binary_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CASCADE_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    with pytest.raises(BinaryNotFound, match="pip install"):
        find_binary()


def test_the_runner_without_a_task_says_what_it_is() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CSPY_TASK"}
    proc = subprocess.run(
        [sys.executable, "-m", "cascade.runner"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2
    assert "CSPY_TASK is not set" in proc.stderr
    assert "task.fn" in proc.stderr
