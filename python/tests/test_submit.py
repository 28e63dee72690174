"""`cs.submit`: a real `cascade serve` on loopback with a registered git repository made
here; the pipeline runs on the server's worker in a worktree at the commit submitted, so
its task reads that commit's files and imports the pipeline module from it."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cascade as cs
import pytest
from conftest import cascade_bin

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or shutil.which("git") is None,
    reason="cascade serve runs jobs in bubblewrap; the repository is made with git",
)

PIPELINE = """\
import os

import cascade as cs

# The job's `python3` is the system's: it finds this package where the test says.
SITE = os.environ.get("CASCADE_TEST_SITE", "")


@cs.task(env={"PYTHONPATH": SITE})
def read_marker() -> str:
    with open("marker.txt") as f:
        text = f.read().strip()
    print(f"marker says {text}")
    return text


def pipeline() -> cs.LazyResult[str]:
    return read_marker()
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(repo: Path, files: dict[str, str | None]) -> str:
    for name, text in files.items():
        if text is None:
            git(repo, "rm", "-q", name)
        else:
            (repo / name).write_text(text)
            git(repo, "add", name)
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "c")
    return git(repo, "rev-parse", "HEAD")


class Server:
    def __init__(self, proc: subprocess.Popen[str], url: str, token: str) -> None:
        self.proc = proc
        self.url = url
        self.token = token

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path)
        request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "app"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    return repo


@pytest.fixture
def server(tmp_path: Path, repo: Path) -> Iterator[Server]:
    site = os.path.dirname(os.path.dirname(cs.__file__))
    config = tmp_path / "cascade.toml"
    config.write_text(
        f'[repositories."acme/app"]\nforge = "github"\nurl = "file://{repo}"\n'
        f"[sandbox]\nread_only = [{json.dumps(site)}]\n"
    )
    data = tmp_path / "data"
    env = dict(os.environ, CASCADE_LOG="warn")
    proc = subprocess.Popen(
        [
            *(cascade_bin(), "serve", "--listen", "127.0.0.1:0", "--node-id", "test"),
            *("--data-dir", str(data), "--config", str(config)),
        ],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "listening on " in line:
            break
    else:
        proc.wait()
        pytest.fail("serve exited before listening:\n" + "".join(seen))
    addr = line.split("://")[1].split()[0]
    stderr = proc.stderr
    threading.Thread(target=lambda: [None for _ in stderr], daemon=True).start()
    token = (data / "admin.token").read_text().strip()
    try:
        yield Server(proc, f"http://{addr}", token)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def load_pipeline(repo: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Any:
    """The pipeline module, imported from the repository as a package-style module."""
    monkeypatch.chdir(repo)
    monkeypatch.syspath_prepend(str(repo))
    monkeypatch.setenv("CASCADE_TEST_SITE", os.path.dirname(os.path.dirname(cs.__file__)))
    (repo / f"{name}.py").write_text(PIPELINE)
    module = importlib.import_module(name)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def test_submit_runs_the_pipeline_at_the_commit_given_not_the_working_tree(
    repo: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_pipeline(repo, monkeypatch, "submitted_pipe")
    first = commit(repo, {"submitted_pipe.py": PIPELINE, "marker.txt": "first\n"})
    second = commit(repo, {"marker.txt": "second\n"})
    assert first != second

    run_id = cs.submit(
        module.pipeline(), server.url, token=server.token, repository="acme/app", commit=first
    )
    # wait=True on a second submission (HEAD), and the first one read back after.
    head = cs.submit(
        module.pipeline, server.url, token=server.token, wait=True, repository=str(repo)
    )
    answer = server.get(f"/api/v1/runs/{head}")
    assert answer["run"]["status"] == "succeeded", answer
    assert answer["run"]["source"] == f"acme/app@{second}"
    assert json.loads(answer["tasks"][0]["output"]["result"]) == "second"

    for _ in range(600):
        answer = server.get(f"/api/v1/runs/{run_id}")
        if answer["run"]["status"] not in ("queued", "running"):
            break
        threading.Event().wait(0.1)
    assert answer["run"]["status"] == "succeeded", answer
    assert answer["run"]["source"] == f"acme/app@{first}"
    assert json.loads(answer["tasks"][0]["output"]["result"]) == "first"
    logs = [line["line"] for line in server.get(f"/api/v1/runs/{run_id}/logs")["logs"]]
    assert "marker says first" in logs, logs


def test_a_failed_run_raises_submit_failed_with_the_task_error(
    repo: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_pipeline(repo, monkeypatch, "failing_pipe")
    commit(repo, {"failing_pipe.py": PIPELINE})  # no marker.txt at this commit
    with pytest.raises(cs.SubmitFailed) as failed:
        cs.submit(
            module.pipeline(), server.url, token=server.token, repository="acme/app", wait=True
        )
    assert failed.value.status == "failed"
    assert list(failed.value.errors) == ["read_marker"], failed.value.errors
    logs = server.get(f"/api/v1/runs/{failed.value.run_id}/logs")["logs"]
    assert any("marker.txt" in line["line"] for line in logs), logs


def test_refusals_say_what_to_do(
    repo: Path, server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module = load_pipeline(repo, monkeypatch, "refused_pipe")
    commit(repo, {"refused_pipe.py": PIPELINE})
    with pytest.raises(cs.SubmitError, match=r"not a repository registered.*`acme/app`"):
        cs.submit(module.pipeline(), server.url, token=server.token, repository="acme/other")
    # Uncommitted changes to the pipeline's own file: HEAD is not what was rendered.
    (repo / "refused_pipe.py").write_text(PIPELINE + "\n# edited\n")
    with pytest.raises(cs.SubmitError, match=r"not committed \(refused_pipe.py\)"):
        cs.submit(module.pipeline(), server.url, token=server.token, repository="acme/app")
    # Not from the top of the repository.
    sub = repo / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    with pytest.raises(cs.SubmitError, match="from the top of the repository"):
        cs.submit(module.pipeline(), server.url, token=server.token, repository="acme/app")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cs.SubmitError, match="not in one"):
        cs.submit(module.pipeline(), server.url, token=server.token)
