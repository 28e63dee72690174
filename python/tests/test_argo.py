"""`cascade argo render file.py:function`: the Workflow of a Python pipeline, from the real
binary. Its Python tasks run `python3 -m cascade.runner` in the checked-out repository,
in the task's image or `[python] image`; results, map items and fan-ins travel as Argo
parameters. The last test runs each rendered container command for real (in bubblewrap,
so its `/tmp/cascade` is private), passing values between tasks the way Argo does."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS, cascade_bin, env_for_runs, render_cli

REPO = "https://github.com/acme/app.git"
REVISION = "0123456789abcdef0123456789abcdef01234567"
FIXTURE = TESTS.parent.parent / "crates" / "cascade-argo" / "tests" / "fixtures" / "python.yaml"
CONFIG = """\
[secrets.PYPI_TOKEN]
secret = "pypi"
key = "token"
[python]
image = "registry.example/cascade-python:3.12"
"""


def argo_render(
    tmp_path: Path, *extra: str, config: str = CONFIG
) -> subprocess.CompletedProcess[str]:
    toml = tmp_path / "cascade.toml"
    toml.write_text(config)
    args = ["argo", "render", "pipelines/argo.py:pr", "--config", str(toml), "--output", "json"]
    return subprocess.run(
        [cascade_bin(), *args, *extra],
        cwd=TESTS,
        capture_output=True,
        text=True,
        env=env_for_runs(),
        timeout=120,
    )


def workflow(tmp_path: Path, config: str = CONFIG) -> dict[str, Any]:
    proc = argo_render(tmp_path, "--repo", REPO, "--revision", REVISION, config=config)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


class Job:
    """One task of `main` and its container template."""

    def __init__(self, w: dict[str, Any], name: str) -> None:
        templates = w["spec"]["templates"]
        self.task = next(t for t in templates[0]["dag"]["tasks"] if t["name"] == name)
        self.template = next(t for t in templates if t["name"] == self.task["template"])
        self.container = self.template["container"]

    def arg(self, name: str) -> str:
        return str(
            next(p["value"] for p in self.task["arguments"]["parameters"] if p["name"] == name)
        )

    def env(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.container.get("env", []) if e["name"] == name), None)

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = json.loads(self.arg("CSPY_TASK"))
        return spec


def test_the_rust_fixture_is_what_the_sdk_renders() -> None:
    rendered = render_cli("pipelines/argo.py:pr", TESTS)
    assert rendered.code == 0, rendered.stderr
    text = "".join(
        line for line in FIXTURE.read_text().splitlines(True) if not line.startswith("#")
    )
    assert json.loads(text) == rendered.document, (
        f"{FIXTURE} is out of date: regenerate it from `python -m cascade render pipelines/argo.py:pr`"
    )


def test_python_tasks_run_the_runner_in_the_checkout(tmp_path: Path) -> None:
    w = workflow(tmp_path)
    assert w["kind"] == "Workflow"
    names = [t["name"] for t in w["spec"]["templates"][0]["dag"]["tasks"]]
    assert names == ["changed", "lint", "build-zip", "build", "check", "marker"]
    for name in names:
        job = Job(w, name)
        assert job.container["command"] == ["sh", "-c"]
        assert job.container["args"][1:] == ["cascade-job", "python3 -m cascade.runner"]
        assert job.container["workingDir"] == "/src"
        assert job.template["inputs"]["artifacts"] == [
            {"name": "source", "path": "/src", "git": {"repo": REPO, "revision": REVISION}}
        ]
        assert job.env("CSPY_TASK") == {
            "name": "CSPY_TASK",
            "value": "{{inputs.parameters.CSPY_TASK}}",
        }
        assert job.template["outputs"]["parameters"][0] == {
            "name": "result",
            "valueFrom": {
                "path": "/tmp/cascade/outputs/result",
                "default": "[]" if name in ("changed", "build-zip") else "",
            },
        }
    assert Job(w, "lint").spec()["entry"] == "pipelines/argo.py:lint"
    assert Job(w, "build-zip").spec()["entry"] == "cascade._builtins:zip_lists"
    # The task's own image, else [python] image of cascade.toml.
    assert Job(w, "lint").container["image"] == "python:3.11-slim"
    assert Job(w, "marker").container["image"] == "registry.example/cascade-python:3.12"


def test_secrets_resources_retry_and_timeout_of_a_task(tmp_path: Path) -> None:
    w = workflow(tmp_path)
    lint = Job(w, "lint")
    assert lint.env("PYPI_TOKEN") == {
        "name": "PYPI_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "pypi", "key": "token", "optional": False}},
    }
    assert Job(w, "marker").env("PYPI_TOKEN") is None
    amounts = {"cpu": "2", "memory": "1Gi"}
    assert lint.container["resources"] == {"requests": amounts, "limits": amounts}
    assert lint.template["retryStrategy"]["limit"] == 2
    assert lint.template["activeDeadlineSeconds"] == 600


def test_maps_and_fan_in_read_argo_parameters(tmp_path: Path) -> None:
    w = workflow(tmp_path)
    changed, lint = Job(w, "changed"), Job(w, "lint")
    # The map iterates over the producer's items as JSON texts and gets one as its arg.
    assert lint.task["withParam"] == "{{tasks.changed.outputs.parameters.result--items}}"
    assert lint.arg("CSPY_ARG_0") == "{{item}}"
    assert lint.spec()["args"]["package"] == {"env": "CSPY_ARG_0", "kind": "item"}
    assert changed.env("CASCADE_ITEMS_OF") == {"name": "CASCADE_ITEMS_OF", "value": "result"}
    assert [p["name"] for p in changed.template["outputs"]["parameters"]] == [
        "result",
        "result--items",
    ]
    assert (
        Job(w, "build").task["withParam"] == "{{tasks.build-zip.outputs.parameters.result--items}}"
    )
    assert Job(w, "build-zip").arg("CSPY_ARG_0") == "{{tasks.changed.outputs.parameters.result}}"
    assert Job(w, "check").task["withItems"] == ['"ruff"', '"mypy"']
    marker = Job(w, "marker")
    assert marker.arg("CSPY_ARG_0") == "{{tasks.lint.outputs.parameters.result}}"
    assert marker.arg("CSPY_ARG_1") == "{{tasks.build.outputs.parameters.result}}"
    assert marker.arg("CSPY_ARG_2") == "{{tasks.check.outputs.parameters.result}}"
    assert marker.arg("CSPY_ARG_3") == '"prod"'
    assert [marker.spec()["args"][p]["kind"] for p in ("linted", "built", "checked", "target")] == [
        "fanin",
        "fanin",
        "fanin",
        "param",
    ]
    # The fan-in runs when no map failed (an empty map is not a failure).
    assert "lint.Failed" in marker.task["depends"]
    assert "Succeeded" not in marker.task["depends"]


def test_install_runs_before_the_runner(tmp_path: Path) -> None:
    config = CONFIG + 'install = "pip install --user cascade==0.1.0"\n'
    marker = Job(workflow(tmp_path, config), "marker")
    assert marker.container["args"][2] == (
        'mkdir -p "$HOME"\npip install --user cascade==0.1.0\npython3 -m cascade.runner'
    )
    assert marker.env("HOME") == {"name": "HOME", "value": "/tmp/cascade/home"}


def test_a_python_pipeline_needs_a_repository(tmp_path: Path) -> None:
    proc = argo_render(tmp_path)
    assert proc.returncode == 1
    assert "job `changed` is a Python task" in proc.stderr
    assert "--repo URL --revision SHA" in proc.stderr


class Argo:
    """Runs the rendered tasks in order the way Argo's controller would: parameters
    substituted (`{{item}}` of a string item is the string itself; a mapped task's
    output is the JSON list of its items' values), each container command run in its own
    bubblewrap with a private /tmp/cascade, `python/tests` standing in for the checkout."""

    def __init__(self, w: dict[str, Any], tmp: Path) -> None:
        self.w = w
        self.tmp = tmp
        self.outputs: dict[str, Any] = {}

    def substitute(self, text: str, item: str | None) -> str:
        def value(m: re.Match[str]) -> str:
            if m.group(0) == "{{item}}":
                assert item is not None
                return item
            out = self.outputs[m.group(1)]
            name = m.group(2)
            return json.dumps([o[name] for o in out]) if isinstance(out, list) else str(out[name])

        return re.sub(
            r"\{\{item\}\}|\{\{tasks\.([a-z0-9-]+)\.outputs\.parameters\.([A-Za-z0-9_-]+)\}\}",
            value,
            text,
        )

    def run(self, name: str) -> None:
        job = Job(self.w, name)
        if "withParam" in job.task:
            items = json.loads(self.substitute(job.task["withParam"], None))
            texts = [i if isinstance(i, str) else json.dumps(i) for i in items]
            self.outputs[name] = [self.pod(job, name, i, t) for i, t in enumerate(texts)]
        elif "withItems" in job.task:
            self.outputs[name] = [
                self.pod(job, name, i, t) for i, t in enumerate(job.task["withItems"])
            ]
        else:
            self.outputs[name] = self.pod(job, name, 0, None)

    def pod(self, job: Job, name: str, index: int, item: str | None) -> dict[str, str]:
        params = {
            p["name"]: self.substitute(p["value"], item)
            for p in job.task["arguments"]["parameters"]
        }
        env = env_for_runs()
        for e in job.container["env"]:
            if "valueFrom" in e:
                env[e["name"]] = "secret-from-kubernetes"
            else:
                env[e["name"]] = re.sub(
                    r"\{\{inputs\.parameters\.([A-Za-z0-9_]+)\}\}",
                    lambda m: params[m.group(1)],
                    e["value"],
                )
        root = self.tmp / f"{name}-{index}"
        root.mkdir()
        bwrap = [
            "bwrap",
            "--dev-bind",
            "/",
            "/",
            "--bind",
            str(root),
            "/tmp/cascade",
            "--chdir",
            str(TESTS),
        ]
        proc = subprocess.run(
            [*bwrap, *job.container["command"], *job.container["args"]],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, f"{name}[{index}]: {proc.stdout}{proc.stderr}"
        out: dict[str, str] = {}
        for p in job.template["outputs"]["parameters"]:
            path = root / os.path.relpath(p["valueFrom"]["path"], "/tmp/cascade")
            out[p["name"]] = path.read_text() if path.exists() else p["valueFrom"]["default"]
        return out


@pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="needs bubblewrap for a private /tmp/cascade"
)
def test_the_rendered_commands_pass_values_as_argo_would(tmp_path: Path) -> None:
    argo = Argo(workflow(tmp_path), tmp_path)
    for name in ["changed", "lint", "build-zip", "build", "check", "marker"]:
        argo.run(name)
    assert json.loads(argo.outputs["changed"]["result--items"]) == ['"a"', '"b"']
    assert [json.loads(o["result"]) for o in argo.outputs["lint"]] == ["a", "b"]
    assert [json.loads(o["result"]) for o in argo.outputs["build"]] == ["ax", "by"]
    assert [json.loads(o["result"]) for o in argo.outputs["check"]] == ["ruff", "mypy"]
    assert json.loads(argo.outputs["marker"]["result"]) == "a,b,ax,by,ruff,mypy -> prod"
