"""The Python examples (`examples/python/`), run as a user runs them: `cascade validate`,
`cascade plan` and `cascade run` on `file.py:function`, and their own pytest file.

scripts/python-test runs this against the installed wheel from a clean virtual
environment. Each test works on a copy of `examples/python` in a temporary folder (the
examples write `dist/` and `.cascade/` into the working directory), started from that
folder as `examples/python/<file>.py:<function>`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import cascade_bin, env_for_runs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"
PIPELINES = [
    ("pr_check.py", "pr_check"),
    ("release.py", "release"),
]
# cs.render(function()) of a file loaded as the binary's render loads it (by path, not as
# __main__, so the `if __name__ == "__main__":` block does not run).
RENDER = """
import json, sys
import cascade as cs
from cascade.runner import load_path
path, function = sys.argv[1].rsplit(":", 1)
json.dump(cs.render(getattr(load_path(path), function)()), sys.stdout)
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder holding a copy of examples/python, outside any git repository."""
    shutil.copytree(
        EXAMPLES,
        tmp_path / "examples" / "python",
        ignore=shutil.ignore_patterns("__pycache__", "dist", ".cascade", ".pytest_cache"),
    )
    return tmp_path


def env(work: Path, **extra: str) -> dict[str, str]:
    out = env_for_runs()
    out.pop("PYPI_TOKEN", None)
    # git looks for a repository no higher than the copy: the tests that want one make it.
    out["GIT_CEILING_DIRECTORIES"] = str(work.parent)
    out.update(extra)
    return out


def cascade(
    work: Path, *args: str, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cascade_bin(), *args],
        cwd=work,
        capture_output=True,
        text=True,
        env=env(work, **(extra or {})),
        timeout=180,
    )


class Ran:
    """A finished `cascade run --summary`."""

    def __init__(self, proc: subprocess.CompletedProcess[str], summary: Path) -> None:
        self.proc = proc
        self.output = proc.stdout + proc.stderr
        self.summary: dict[str, Any] = json.loads(summary.read_text())

    def result(self, job: str) -> Any:
        """A single job's return value (decoded)."""
        text = self.summary["jobs"][job]["outputs"]["result"]
        return json.loads(text)

    def states(self) -> dict[str, str]:
        return {t["id"]: t["state"] for t in self.summary["tasks"]}


def run(work: Path, target: str, *args: str, extra: dict[str, str] | None = None) -> Ran:
    summary = work / "summary.json"
    summary.unlink(missing_ok=True)
    proc = cascade(
        work,
        "run",
        f"examples/python/{target}",
        "--data-dir",
        ".cascade",
        "-j",
        "2",
        "--summary",
        str(summary),
        *args,
        extra=extra,
    )
    assert summary.exists(), proc.stdout + proc.stderr
    return Ran(proc, summary)


def git(work: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=work,
        check=True,
        capture_output=True,
        env=env(work),
    )


def commit_all(work: Path, message: str) -> None:
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message)


@pytest.mark.parametrize(("file", "function"), PIPELINES)
def test_example_validates(work: Path, file: str, function: str) -> None:
    proc = cascade(work, "validate", f"examples/python/{file}:{function}")
    assert proc.returncode == 0, proc.stderr
    assert f"ok: examples/python/{file}:{function}" in proc.stdout


@pytest.mark.parametrize(("file", "function"), PIPELINES)
def test_plan_of_the_file_equals_plan_of_cs_render(work: Path, file: str, function: str) -> None:
    target = f"examples/python/{file}:{function}"
    rendered = subprocess.run(
        [sys.executable, "-c", RENDER, target],
        cwd=work,
        capture_output=True,
        text=True,
        env=env(work),
        timeout=60,
    )
    assert rendered.returncode == 0, rendered.stderr
    # JSON is YAML: a `.yaml` file is read as a pipeline (a `.json` one as a DAG).
    (work / "rendered.yaml").write_text(rendered.stdout)
    from_file = cascade(work, "plan", target, "--output", "json")
    from_render = cascade(work, "plan", "rendered.yaml", "--output", "json")
    assert from_file.returncode == 0, from_file.stderr
    assert from_render.returncode == 0, from_render.stderr
    plan = json.loads(from_file.stdout)
    assert plan == json.loads(from_render.stdout)
    assert plan["name"] == function
    assert all(job["run"]["script"] == "python3 -m cascade.runner" for job in plan["jobs"])


def test_pr_check_outside_git_checks_every_package(work: Path) -> None:
    ran = run(work, "pr_check.py:pr_check")
    assert ran.proc.returncode == 0, ran.output
    assert ran.summary["status"] == "succeeded"
    assert ran.result("summary") == "PR check passed: TEST_OK_alpha, TEST_OK_beta"
    assert ran.result("detect_changed_packages") == ["alpha", "beta"]
    assert "checking every package" in ran.output


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_pr_check_lints_and_tests_only_what_changed(work: Path) -> None:
    git(work, "init", "-q")
    commit_all(work, "initial")
    beta = work / "examples/python/monorepo/packages/beta/beta/__init__.py"
    beta.write_text(beta.read_text() + "\n\ndef sub(a: int, b: int) -> int:\n    return a - b\n")
    commit_all(work, "beta: sub")

    ran = run(work, "pr_check.py:pr_check")
    assert ran.proc.returncode == 0, ran.output
    assert ran.result("detect_changed_packages") == ["beta"]
    assert ran.result("summary") == "PR check passed: TEST_OK_beta"
    assert ran.states() == {
        "detect_changed_packages": "succeeded",
        "lint_package[0]": "succeeded",
        "test_package[0]": "succeeded",
        "summary": "succeeded",
    }

    # A change outside the packages: the maps are empty, the fan-in still runs with [].
    (work / "examples/python/monorepo/README.md").write_text("docs only\n")
    commit_all(work, "docs")
    ran = run(work, "pr_check.py:pr_check")
    assert ran.proc.returncode == 0, ran.output
    assert ran.result("detect_changed_packages") == []
    assert ran.result("summary") == "PR check: no package changed"

    # The param: against the first commit, beta changed (and the README, not a package).
    ran = run(work, "pr_check.py:pr_check", "--input", "base=HEAD~2")
    assert ran.result("summary") == "PR check passed: TEST_OK_beta"


def test_pr_check_a_lint_failure_skips_the_tests(work: Path) -> None:
    broken = work / "examples/python/monorepo/packages/beta/beta/__init__.py"
    broken.write_text("def add(a, b:\n")
    ran = run(work, "pr_check.py:pr_check")
    assert ran.proc.returncode == 1, ran.output
    assert ran.summary["status"] == "failed"
    states = ran.states()
    assert states["lint_package[0]"] == "succeeded"
    assert states["lint_package[1]"] == "failed"
    assert all(states[t] == "skipped" for t in states if t.startswith("test_package")), states
    assert states["summary"] == "skipped"
    assert "beta/__init__.py" in ran.output


def test_release_builds_and_masks_the_token(work: Path) -> None:
    token = "pypi-AgEIcHlwaS5vcmc-test-4f1c9e"
    ran = run(work, "release.py:release", extra={"PYPI_TOKEN": token})
    assert ran.proc.returncode == 0, ran.output
    assert ran.result("publish") == "DRY_RUN dist/alpha.zip dist/beta.zip"
    assert sorted(p.name for p in (work / "dist").iterdir()) == ["alpha.zip", "beta.zip"]
    logs = cascade(work, "logs", "--data-dir", ".cascade", ran.summary["run_id"], "publish")
    assert logs.returncode == 0, logs.stderr
    text = logs.stdout + logs.stderr
    assert "TWINE_PASSWORD=*** twine upload --non-interactive dist/alpha.zip" in text
    assert token not in text
    assert token not in ran.output
    assert token not in (work / "summary.json").read_text()


def test_release_without_the_token(work: Path) -> None:
    # A run that includes publish stops before anything runs, naming the secret.
    proc = cascade(work, "run", "examples/python/release.py:release", "--data-dir", ".cascade")
    assert proc.returncode == 1
    assert "secrets not set: PYPI_TOKEN" in proc.stderr
    assert not (work / "dist").exists()
    # Lint, test and build alone need no secret.
    ran = run(work, "release.py:release", "--job", "build_package")
    assert ran.proc.returncode == 0, ran.output
    assert "publish" not in ran.states()
    assert ran.summary["jobs"]["build_package"]["outputs"]["result"] == [
        '"dist/alpha.zip"',
        '"dist/beta.zip"',
    ]


def test_the_examples_own_tests_pass(work: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "examples/python/test_pipeline.py",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=env(work, PYTHONDONTWRITEBYTECODE="1"),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^9 passed", proc.stdout, re.MULTILINE), proc.stdout


def test_the_pr_check_runs_as_a_script_through_cs_run(work: Path) -> None:
    """`python examples/python/pr_check.py`: the `if __name__ == "__main__"` guard calls
    `cs.run`, which returns the summary task's value; the run is recorded like any other."""
    proc = subprocess.run(
        [sys.executable, "examples/python/pr_check.py"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env(work),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "PR check passed: TEST_OK_alpha, TEST_OK_beta"
    runs = cascade(work, "runs", "--output", "json")
    assert json.loads(runs.stdout)[0]["status"] == "succeeded", runs.stdout
