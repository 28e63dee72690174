"""`cs.run`: a Python program runs its pipeline on the local engine (the real `cascade`
binary of the installed wheel) and gets the target's value back.

Each test writes a pipeline file into a temporary project and runs it as a program
(`python pipe.py ...`, the way users run theirs), so the tasks are imported by path in
their own processes. The program prints `RESULT <json>` or `FAILED <json>` as its last line.
Time bounds are loose ceilings on a hang, never measurements.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import Project, cascade_bin, env_for_runs

DRIVER = """
import json, sys
import cascade as cs

def main(pipeline, **kw):
    try:
        value = cs.run(pipeline(), **kw)
    except cs.RunFailed as e:
        print("FAILED " + json.dumps({"run_id": e.run_id, "status": e.status,
                                     "failed": e.failed, "message": str(e)}), flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
        sys.exit(130)
    print("RESULT " + json.dumps(value), flush=True)
"""


def drive(
    project: Project,
    script: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        env=env or env_for_runs(),
        timeout=timeout,
    )


def last(proc: subprocess.CompletedProcess[str], word: str) -> Any:
    lines = [line for line in proc.stdout.splitlines() if line.startswith(word + " ")]
    assert lines, f"no {word} line\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(lines[-1][len(word) + 1 :])


def cascade_json(project: Project, *args: str) -> Any:
    proc = subprocess.run(
        [cascade_bin(), *args, "--data-dir", ".cascade", "--output", "json"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env=env_for_runs(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


BASICS = (
    DRIVER
    + """
@cs.task
def numbers() -> list[int]:
    return [1, 2, 3]

@cs.task
def double(x: int) -> int:
    print(f"doubling {x}")
    return 2 * x

@cs.task
def total(xs: list[int]) -> int:
    return sum(xs)

@cs.task
def describe(n: int, word: str) -> str:
    return f"{word}:{n}"

def chain():
    return describe(total(double.map(x=numbers())), word="sum")

def mapped():
    return double.map(x=[5, 6])

def fanin():
    return total(double.map(x=numbers()))

def empty():
    return double.map(x=[])

def many():
    return [chain(), mapped(), fanin(), empty()]

if __name__ == "__main__":
    main(globals()[sys.argv[1]])
"""
)


def test_returns_the_value_of_a_chain_a_map_a_fan_in_and_a_list(project: Project) -> None:
    project.write("pipe.py", BASICS)
    proc = drive(project, "pipe.py", "many")
    assert proc.returncode == 0, proc.stderr
    assert last(proc, "RESULT") == ["sum:12", [10, 12], 12, []]
    # The rendered document is kept where the brief says, and read as a pipeline.
    # (named after the function that built the first target, as cs.render names it)
    (rendered,) = (project.root / ".cascade" / "python").iterdir()
    document = json.loads(rendered.read_text())
    assert rendered.name == f"{document['name']}.json" == "chain.json"
    assert document["jobs"]["describe"]["run"] == "python3 -m cascade.runner"


def test_the_run_is_recorded_listed_and_its_logs_readable(project: Project) -> None:
    project.write("pipe.py", BASICS)
    proc = drive(project, "pipe.py", "mapped")
    assert proc.returncode == 0, proc.stderr
    assert last(proc, "RESULT") == [10, 12]
    runs = cascade_json(project, "runs")
    assert [(r["dag_id"], r["status"]) for r in runs] == [("mapped", "succeeded")]
    logs = subprocess.run(
        [cascade_bin(), "logs", "--data-dir", ".cascade", runs[0]["run_id"], "double"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env=env_for_runs(),
        timeout=60,
    )
    assert logs.returncode == 0, logs.stderr
    assert "doubling 5" in logs.stdout and "doubling 6" in logs.stdout, logs.stdout
    # The progress view of `cascade run` went to stderr, as the program's own.
    assert runs[0]["run_id"] in proc.stderr, proc.stderr


def test_run_failed_names_each_failed_task(project: Project) -> None:
    project.write(
        "fail.py",
        DRIVER
        + """
@cs.task
def ok() -> int:
    return 1

@cs.task
def bad(x: int) -> int:
    raise ValueError(f"bad item {x}")

@cs.task
def after(xs: list[int], y: int) -> int:
    return 0

def pipeline():
    return after(bad.map(x=[1, 2]), ok())

if __name__ == "__main__":
    main(pipeline)
""",
    )
    proc = drive(project, "fail.py")
    assert proc.returncode == 1, proc.stderr
    failed = last(proc, "FAILED")
    assert failed["status"] == "failed"
    assert sorted(task for task, _ in failed["failed"]) == ["bad[0]", "bad[1]"]
    assert all(error for _, error in failed["failed"]), failed
    assert "task bad[0]:" in failed["message"] and "task bad[1]:" in failed["message"]
    assert failed["run_id"] == cascade_json(project, "runs")[0]["run_id"]
    assert "ValueError: bad item 2" in proc.stderr, "the traceback is in the progress view"


def test_params_reach_the_tasks_and_unknown_ones_are_refused(project: Project) -> None:
    project.write(
        "params.py",
        DRIVER
        + """
@cs.task
def greet(name: str, times: int) -> str:
    return " ".join([f"hi {name}"] * times)

def pipeline():
    return greet(cs.Param("name", default="x"), cs.Param("times", default=1))

if __name__ == "__main__":
    params = json.loads(sys.argv[1])
    try:
        main(pipeline, params=params)
    except ValueError as e:
        print("ERROR " + json.dumps(str(e)))
""",
    )
    proc = drive(project, "params.py", json.dumps({"name": "ann", "times": 2}))
    assert last(proc, "RESULT") == "hi ann hi ann", proc.stderr
    proc = drive(project, "params.py", json.dumps({"nmae": "ann"}))
    assert "params has 'nmae'" in last(proc, "ERROR")
    assert "name, times" in last(proc, "ERROR")


def test_system_resources_is_the_capacity_tasks_weigh_against(project: Project) -> None:
    project.write(
        "res.py",
        DRIVER
        + """
import time

@cs.task(resources={"cpu": 2})
def heavy(n: int) -> list[float]:
    start = time.time()
    time.sleep(1)
    return [start, time.time()]

def pipeline():
    return [heavy(1), heavy(2)]

if __name__ == "__main__":
    main(pipeline, system_resources={"cpu": 2, "memory": "1Gi"})
""",
    )
    proc = drive(project, "res.py")
    assert proc.returncode == 0, proc.stderr
    (a0, a1), (b0, b1) = last(proc, "RESULT")
    assert a1 <= b0 or b1 <= a0, f"two cpu-2 tasks overlapped on cpu=2: {a0, a1} {b0, b1}"


def test_bad_system_resources_and_log_options_are_refused_before_running(
    project: Project,
) -> None:
    import cascade as cs

    one = cs.task(_one)

    with pytest.raises(ValueError, match=r'expected "cpu" and/or "memory"'):
        cs.run(one(), system_resources={"gpu": 1}, data_dir=str(project.root / "d"))
    with pytest.raises(ValueError, match=r'system_resources\["cpu"\] must be a number'):
        cs.run(one(), system_resources={"cpu": "four"}, data_dir=str(project.root / "d"))
    with pytest.raises(ValueError, match="log_level must be"):
        cs.run(one(), log_level="LOUD", data_dir=str(project.root / "d"))
    with pytest.raises(ValueError, match="log_format must be"):
        cs.run(one(), log_format="xml", data_dir=str(project.root / "d"))
    with pytest.raises(TypeError, match=r"cs\.Connector protocol"):
        cs.run(one(), connector=object(), data_dir=str(project.root / "d"))
    assert not (project.root / "d").exists(), "nothing was written or run"


def test_log_format_json_forwards_event_lines_to_stdout(project: Project) -> None:
    project.write(
        "pipe.py", BASICS.replace("main(globals()[sys.argv[1]])", 'main(mapped, log_format="json")')
    )
    proc = drive(project, "pipe.py")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "RESULT [10, 12]"
    events = [json.loads(line) for line in lines[:-1]]
    assert len(events) >= 4, proc.stdout
    text = json.dumps(events)
    assert "double[0]" in text and "double[1]" in text, text


def test_ctrl_c_cancels_the_run_and_raises_keyboard_interrupt(project: Project) -> None:
    project.write(
        "long.py",
        DRIVER
        + """
import time
from pathlib import Path

@cs.task
def long() -> int:
    Path("started").write_text("yes")
    time.sleep(60)
    return 1

def pipeline():
    return long()

if __name__ == "__main__":
    main(pipeline)
""",
    )
    child = subprocess.Popen(
        [sys.executable, "long.py"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for_runs(),
    )
    try:
        deadline = time.monotonic() + 60
        while not (project.root / "started").exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the task did not start"
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, stderr
    assert stdout.strip().splitlines()[-1] == "INTERRUPTED", stdout
    runs = cascade_json(project, "runs")
    assert [(r["dag_id"], r["status"]) for r in runs] == [("pipeline", "cancelled")]


def test_cs_run_inside_a_task_process_is_refused(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module calls cs.run() when imported: the task process that imports it refuses.
    project.write(
        "noguard.py",
        DRIVER
        + """
@cs.task
def one() -> int:
    return 1

def pipeline():
    return one()

main(pipeline)
""",
    )
    proc = drive(project, "noguard.py")
    assert proc.returncode == 1, proc.stderr
    failed = last(proc, "FAILED")
    assert [task for task, _ in failed["failed"]] == ["one"]
    assert 'if __name__ == "__main__":' in proc.stderr, proc.stderr
    assert len(cascade_json(project, "runs")) == 1, "no run started from inside the task"

    import cascade as cs

    monkeypatch.setenv("CSPY_TASK", "{}")
    with pytest.raises(RuntimeError, match="inside a task process"):
        cs.run(one_task())


def one_task() -> Any:
    import cascade as cs

    return cs.task(_one)()


def _one() -> int:
    return 1


def test_tasks_get_only_declared_variables_and_secrets_masked(project: Project) -> None:
    project.write(
        "env.py",
        DRIVER
        + """
import os

@cs.task
def look() -> dict:
    token = cs.Env("RUN_TEST_TOKEN")
    print(f"token is {token}")
    return {"undeclared": os.environ.get("RUN_TEST_OTHER"), "token_len": len(token),
            "python": os.environ.get("PATH", "").split(os.pathsep)[0]}

def pipeline():
    return look()

if __name__ == "__main__":
    main(pipeline)
""",
    )
    env = env_for_runs()
    env["RUN_TEST_OTHER"] = "visible-to-the-caller"
    env["RUN_TEST_TOKEN"] = "tok-0123456789"
    proc = drive(project, "env.py", env=env)
    assert proc.returncode == 0, proc.stderr
    result = last(proc, "RESULT")
    assert os.path.realpath(result.pop("python")) == os.path.realpath(
        os.path.dirname(sys.executable)
    ), "PATH starts with the caller's interpreter folder"
    assert result == {"undeclared": None, "token_len": len("tok-0123456789")}
    run_id = cascade_json(project, "runs")[0]["run_id"]
    logs = subprocess.run(
        [cascade_bin(), "logs", "--data-dir", ".cascade", run_id, "look"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env=env_for_runs(),
        timeout=60,
    )
    assert "token is ***" in logs.stdout, logs.stdout
    assert "tok-0123456789" not in logs.stdout + proc.stdout + proc.stderr


def test_rendered_files_are_kept_by_name_with_no_temporary_left(project: Project) -> None:
    project.write("pipe.py", BASICS)
    for target in ("mapped", "fanin"):
        proc = drive(project, "pipe.py", target)
        assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (project.root / ".cascade" / "python").iterdir())
    assert names == ["fanin.json", "mapped.json"]


def test_log_level_words_and_logging_numbers_map_to_the_engines_levels() -> None:
    import logging

    from cascade._run import _level

    assert [_level(w) for w in ("DEBUG", "info", "WARNING", "ERROR", "CRITICAL")] == [
        "debug",
        "info",
        "warn",
        "error",
        "error",
    ]
    assert _level(logging.WARNING) == "warn"
    with pytest.raises(ValueError, match="log_level must be"):
        _level(5)
