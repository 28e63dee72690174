"""How to test a pipeline: its tasks as plain functions, and its shape with `cs.render`.

    pytest examples/python/test_pipeline.py

`task.fn` is the function under the `@cs.task` decorator: call it (or `asyncio.run` it,
for an `async def` task) with ordinary values, and it runs here, in this process.
`cs.render(pipeline())` gives the document the engine would run, a dict, so the graph
itself (which jobs, what they need, what they map over, which secrets they get) is
asserted without running anything.

The pipelines are imported as modules (`pr_check.test_package`), not by name: pytest
would collect a task called `test_package` imported into a test file as a test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import zipfile
from pathlib import Path

import cascade as cs
import pr_check
import pytest
import release

# --- the tasks, called as functions -----------------------------------------------------


def test_packages_touched_keeps_package_folders_only() -> None:
    files = ["packages/beta/beta/__init__.py", "README.md", "packages/alpha/tests/x.py"]
    assert pr_check.packages_touched(files, ["alpha", "beta"]) == ["alpha", "beta"]
    assert pr_check.packages_touched(["packages/gone/a.py", "packages/alpha"], ["alpha"]) == []


def test_detect_falls_back_to_every_package(capsys: pytest.CaptureFixture[str]) -> None:
    changed = asyncio.run(pr_check.detect_changed_packages.fn(base="no-such-ref-for-this-test"))
    assert changed == ["alpha", "beta"]
    assert "checking every package" in capsys.readouterr().out


def test_lint_and_test_a_package() -> None:
    assert pr_check.lint_package.fn(package_name="alpha") == "LINT_OK_alpha"
    assert asyncio.run(pr_check.test_package.fn(package_name="beta")) == "TEST_OK_beta"


def test_a_failing_command_raises_shell_error() -> None:
    with pytest.raises(cs.ShellError) as failed:
        asyncio.run(pr_check.test_package.fn(package_name="no-such-package"))
    assert failed.value.returncode != 0


def test_summary_is_the_marker_line() -> None:
    assert pr_check.summary.fn(["TEST_OK_alpha"]) == "PR check passed: TEST_OK_alpha"
    assert pr_check.summary.fn([]) == "PR check: no package changed"


def test_build_writes_a_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    archive = release.build_package.fn(package_name="alpha")
    assert archive == os.path.join("dist", "alpha.zip")
    with zipfile.ZipFile(tmp_path / archive) as zf:
        assert "packages/alpha/alpha/__init__.py" in zf.namelist()


def test_publish_dry_run_and_missing_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PYPI_TOKEN", "pypi-test-token")
    assert release.publish.fn(artifacts=["dist/a.zip"], dry_run=True) == "DRY_RUN dist/a.zip"
    assert "twine upload" in capsys.readouterr().out
    monkeypatch.delenv("PYPI_TOKEN")
    with pytest.raises(KeyError, match="PYPI_TOKEN"):
        release.publish.fn(artifacts=["dist/a.zip"], dry_run=True)


# --- the graph, rendered ----------------------------------------------------------------


def test_pr_check_maps_over_the_detected_packages() -> None:
    doc = cs.render(pr_check.pr_check())
    jobs = doc["jobs"]
    assert list(jobs) == ["detect_changed_packages", "lint_package", "test_package", "summary"]
    detected = "${{ fromJSON(needs.detect_changed_packages.outputs.result) }}"
    assert jobs["lint_package"]["for_each"] == detected
    assert jobs["test_package"]["for_each"] == detected
    # .after(lint) is an ordering edge next to the data edge.
    assert jobs["test_package"]["needs"] == ["detect_changed_packages", "lint_package"]
    assert jobs["test_package"]["retry"] == {"limit": 1, "backoff": "1s"}
    assert jobs["test_package"]["timeout"] == "10m"
    assert jobs["summary"]["needs"] == ["test_package"]
    # The param and its default (JSON text).
    assert json.loads(doc["on"]["workflow_dispatch"]["inputs"]["base"]["default"]) == "HEAD~1"
    # Every task is a Python job; no job gets a secret.
    assert all(job["run"] == "python3 -m cascade.runner" for job in jobs.values())
    assert not any("secrets" in job for job in jobs.values())


def test_release_orders_lint_test_build_publish() -> None:
    jobs = cs.render(release.release())["jobs"]
    order = ["lint_package", "test_package", "build_package", "publish"]
    assert list(jobs) == order
    for before, after in itertools.pairwise(order):
        assert jobs[after]["needs"] == [before]
    # The packages are known when the pipeline is built: a literal fan-out (JSON items).
    for job in order[:3]:
        assert [json.loads(item) for item in jobs[job]["for_each"]] == ["alpha", "beta"]
    # Only publish gets the token: it reads cs.Env("PYPI_TOKEN").
    assert jobs["publish"]["secrets"] == ["PYPI_TOKEN"]
    assert [name for name, job in jobs.items() if "secrets" in job] == ["publish"]
