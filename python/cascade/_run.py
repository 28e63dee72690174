"""`cs.run(target)`: runs a pipeline on the local engine (the `cascade` binary) and returns
the target's value.

The target is rendered (`cs.render`) to `<data_dir>/python/<name>.json` and run with
`cascade run <that file> --data-dir <data_dir> --summary <tmp> --clean-env`, so the run is
recorded in `<data_dir>/cascade.db` (`cascade runs`, `cascade logs`) like any other, its
progress shows on stderr as `cascade run` shows it, and the tasks get only the
environment they declare. The value comes back from the `--summary` file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from ._graph import TASK_VAR, BuildError, LazyResult, Task

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

#: `log_level` words (Python's, and `logging` numbers) -> `CASCADE_LOG` of the binary.
_LEVELS = {
    "DEBUG": "debug",
    "INFO": "info",
    "WARNING": "warn",
    "WARN": "warn",
    "ERROR": "error",
    "CRITICAL": "error",
    "TRACE": "trace",
}


class RunFailed(Exception):
    """A run that did not succeed: `run_id`, `status` (`failed` or `cancelled`, or
    `not started` when the binary refused the pipeline before it ran; its message is on
    stderr) and `failed`, the `(task id, error)` of each failed task (`job` or `job[2]`
    for the third item of a map)."""

    def __init__(
        self, run_id: str | None, status: str, failed: list[tuple[str, str]], message: str
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status
        self.failed = failed


def run(
    target: Any,
    params: Mapping[str, Any] | None = None,
    system_resources: Mapping[str, Any] | None = None,
    log_level: str | int = "INFO",
    log_format: str = "human",
    connector: object | None = None,
    data_dir: str | os.PathLike[str] = ".cascade",
) -> Any:
    """Runs the pipeline that computes `target` on this machine and returns its value.

    `target`: the LazyResult a pipeline function returned (or a list of them: a list of
    values comes back), or the pipeline function itself. A mapped target returns the list
    of its item results. `params`: values of the `cs.Param`s (JSON values).
    `system_resources`: the engine's capacity, `{"cpu": 4, "memory": "8Gi"}`, that tasks'
    `resources=` weigh against. `log_level`: the engine's log level (`"DEBUG"`, `"INFO"`,
    `"WARNING"`, `"ERROR"`). `log_format`: `"human"` (the progress view on stderr) or
    `"json"` (one JSON event per line on stdout). `connector`: a `cs.Connector` that
    receives the run's telemetry and may send control commands, or
    `cs.connectors.Mqtt(url)` / `cs.connectors.Nats(url)`. `data_dir`: where runs are
    recorded.

    Raises `cs.RunFailed` when the run fails or is cancelled, `KeyboardInterrupt` after a
    Ctrl-C cancelled it, `cs.BuildError` when the graph cannot be built.
    """
    if os.environ.get(TASK_VAR):
        raise RuntimeError(
            "cs.run() was called inside a task process: the module that defines the tasks "
            "calls cs.run() when it is imported. Put the call under "
            '`if __name__ == "__main__":` so that loading the tasks does not start a run'
        )
    from ._binary import find_binary
    from ._connect import Bridge, Connector
    from ._lower import _Lowering, lower
    from .connectors import Mqtt, Nats

    value, name = _target(target)
    roots = list(value) if isinstance(value, (list, tuple)) else [value]
    document = lower(value, name=name).document
    lowering = _Lowering(roots, name)
    lowering.run()
    targets = [(lowering.ids[id(r)], r.is_mapped) for r in roots]

    inputs = _inputs(params, document)
    capacity = _capacity(system_resources)
    level = _level(log_level)
    if log_format not in ("human", "json"):
        raise ValueError(f'log_format must be "human" or "json", found {log_format!r}')
    telemetry: str | None = None
    if isinstance(connector, (Mqtt, Nats)):
        telemetry = connector.url
    elif connector is not None and not isinstance(connector, Connector):
        raise TypeError(
            "connector must have connect(), disconnect(), publish(topic, payload, qos=0) and "
            "subscribe(topic, callback) (the cs.Connector protocol), or be "
            f"cs.connectors.Mqtt(url) / cs.connectors.Nats(url); found {type(connector).__name__}"
        )

    data = os.fspath(data_dir)
    folder = os.path.join(data, "python")
    os.makedirs(folder, exist_ok=True)
    doc_path = os.path.join(folder, f"{name}.json")
    temporary = f"{doc_path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2)
        f.write("\n")
    os.replace(temporary, doc_path)

    scratch = _scratch_dir()
    bridge: Bridge | None = None
    try:
        summary_path = os.path.join(scratch, "summary.json")
        argv = [find_binary(), "run", doc_path, "--data-dir", data, "--summary", summary_path]
        argv.append("--clean-env")
        for key, text in inputs:
            argv += ["--input", f"{key}={text}"]
        if capacity:
            argv += ["--capacity", capacity]
        if log_format == "json":
            argv += ["--output", "json"]
        if connector is not None and telemetry is None:
            bridge = Bridge(connector, scratch)
            bridge.start()
            telemetry = bridge.url
        if telemetry is not None:
            argv += ["--telemetry", telemetry]
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["CASCADE_LOG"] = level
        code, interrupted = _execute(argv, env, json_lines=log_format == "json")
        if bridge is not None:
            bridge.finish()
            bridge = None
        summary = _read_summary(summary_path)
    finally:
        if bridge is not None:
            bridge.finish()
        shutil.rmtree(scratch, ignore_errors=True)
    if interrupted:
        raise KeyboardInterrupt
    if summary is None:
        raise RunFailed(
            None,
            "not started",
            [],
            f"cascade run exited with code {code} before the run started (its message is "
            "above, on stderr)",
        )
    return _result(summary, targets, isinstance(value, (list, tuple)))


def _target(target: Any) -> tuple[Any, str]:
    """The LazyResult(s) to compute and the pipeline's name."""
    name: str | None = None
    if callable(target) and not isinstance(target, (LazyResult, Task)):
        name = getattr(target, "__name__", None)
        target = target()
    roots = list(target) if isinstance(target, (list, tuple)) else [target]
    if not roots or not all(isinstance(r, LazyResult) for r in roots):
        found = "a task (call it)" if isinstance(target, Task) else type(target).__name__
        raise BuildError(
            "cs.run takes the LazyResult a pipeline function returns (a task call), a list of "
            f"them, or the pipeline function; found {found}"
        )
    if name is None:
        fn = roots[0]._site.function
        name = (
            fn if fn != "<module>" else os.path.splitext(os.path.basename(roots[0]._site.file))[0]
        )
    return target, name


def _inputs(params: Mapping[str, Any] | None, document: dict[str, Any]) -> list[tuple[str, str]]:
    """`params` as `--input` pairs (JSON text), each checked against the pipeline's params."""
    if params is None:
        return []
    if not hasattr(params, "items"):
        raise TypeError(
            f"params must be a dict of param name -> value, found {type(params).__name__}"
        )
    declared = document.get("on", {}).get("workflow_dispatch", {}).get("inputs", {})
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ValueError(
                f"params has {key!r}, which the pipeline does not use as a cs.Param "
                f"(its params: {known})"
            )
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"params[{key!r}] must be a JSON value (str, int, float, bool, None, list, dict): {e}"
            ) from None
        out.append((key, text))
    return out


def _capacity(resources: Mapping[str, Any] | None) -> str:
    """`{"cpu": 4, "memory": "8Gi"}` as `--capacity cpu=4,memory=8Gi`."""
    if resources is None:
        return ""
    if not hasattr(resources, "items"):
        raise TypeError(
            'system_resources must be a dict such as {"cpu": 4, "memory": "8Gi"}, '
            f"found {type(resources).__name__}"
        )
    parts: list[str] = []
    for key, value in resources.items():
        if key == "cpu":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(
                    f'system_resources["cpu"] must be a number of cores above 0, found {value!r}'
                )
            parts.append(f"cpu={value:g}")
        elif key == "memory":
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                value = str(value)
            if not isinstance(value, str) or not value.strip() or "," in value:
                raise ValueError(
                    'system_resources["memory"] must be a size such as "512Mi", "8Gi" or a '
                    f"number of bytes, found {value!r}"
                )
            parts.append(f"memory={value.strip()}")
        else:
            raise ValueError(
                f'system_resources has {key!r}; expected "cpu" and/or "memory" '
                '(e.g. {"cpu": 4, "memory": "8Gi"})'
            )
    return ",".join(parts)


def _level(level: str | int) -> str:
    if isinstance(level, int) and not isinstance(level, bool):
        import logging

        word = logging.getLevelName(level)
        level = word if isinstance(word, str) else "INFO"
    if not isinstance(level, str) or level.upper() not in _LEVELS:
        raise ValueError(
            'log_level must be "DEBUG", "INFO", "WARNING" or "ERROR" (or a logging level), '
            f"found {level!r}"
        )
    return _LEVELS[level.upper()]


def _scratch_dir() -> str:
    """A private temporary folder whose paths fit a Unix socket address (~100 bytes)."""
    scratch = tempfile.mkdtemp(prefix="cascade-run-")
    if len(scratch) > 80 and os.path.isdir("/tmp"):
        os.rmdir(scratch)
        scratch = tempfile.mkdtemp(prefix="cascade-run-", dir="/tmp")
    return scratch


def _start(argv: list[str], env: dict[str, str], json_lines: bool) -> subprocess.Popen[bytes]:
    """The binary, in its own process group: a Ctrl-C at the terminal reaches only this
    process, which forwards one SIGINT (a second one would stop every task at once)."""
    stdout = subprocess.PIPE if json_lines else None
    if sys.version_info >= (3, 11):
        return subprocess.Popen(argv, env=env, stdout=stdout, process_group=0)
    return subprocess.Popen(argv, env=env, stdout=stdout, preexec_fn=os.setpgrp)


def _execute(argv: list[str], env: dict[str, str], json_lines: bool) -> tuple[int, bool]:
    """Runs the binary to its end: its exit code and whether a Ctrl-C cancelled it. JSON
    event lines are copied to this process's stdout as they come."""
    proc = _start(argv, env, json_lines)
    interrupted = False
    out = sys.stdout
    while True:
        try:
            if proc.stdout is not None:
                for line in iter(proc.stdout.readline, b""):
                    out.write(line.decode("utf-8", "replace"))
                    out.flush()
                proc.stdout.close()
                proc.stdout = None
            return proc.wait(), interrupted
        except KeyboardInterrupt:
            # Forwarded: the engine cancels the run (a second Ctrl-C stops every task at
            # once, as with `cascade run`), then it exits and we raise.
            interrupted = True
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGINT)
        except BaseException:
            proc.kill()
            proc.wait()
            raise


def _read_summary(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            summary: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        return None
    return summary


def _result(summary: dict[str, Any], targets: list[tuple[str, bool]], many: bool) -> Any:
    run_id = summary.get("run_id")
    status = str(summary.get("status"))
    if status != "succeeded":
        failed = [
            (str(t.get("id")), str(t.get("error") or "failed"))
            for t in summary.get("tasks", [])
            if t.get("state") == "failed"
        ]
        lines = [f"run {run_id} {status}"]
        if summary.get("error"):
            lines[0] += f": {summary['error']}"
        for task_id, error in failed:
            lines.append(f"  task {task_id}: {error}")
        if run_id:
            lines.append(f"  (logs: cascade logs {run_id} [TASK])")
        raise RunFailed(run_id, status, failed, "\n".join(lines))
    values = [_value(summary, job, mapped) for job, mapped in targets]
    return values if many else values[0]


def _value(summary: dict[str, Any], job: str, mapped: bool) -> Any:
    outputs = summary.get("jobs", {}).get(job, {}).get("outputs", {})
    result = outputs.get("result")
    if mapped:
        if result is None:
            return []  # an empty map: the job was skipped
        if isinstance(result, str):
            result = json.loads(result)
        return [json.loads(item) if isinstance(item, str) else item for item in result]
    if result is None:
        raise RunFailed(
            summary.get("run_id"),
            str(summary.get("status")),
            [],
            f"the run succeeded but task {job} left no result (its outputs: {sorted(outputs)})",
        )
    return json.loads(result)
