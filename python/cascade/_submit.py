"""`cs.submit`: send a pipeline to `cascade serve`, to run at a commit of a repository the
server has registered (`[repositories]` of its cascade.toml).

The graph is rendered here, then handed to the binary's `cascade dag submit FILE --server
URL --commit SHA [--repository NAME]` (which checks the document, shares the command
line's TLS and token handling, and sends `{"pipeline", "inputs", "source"}`). The server
checks the commit out into a worktree and runs each task's `python3 -m cascade.runner`
there, so the task's module is imported from that commit, not from this working tree.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from ._graph import LazyResult

# How often `wait=True` asks the server about the run.
POLL_SECONDS = 0.2


class SubmitError(Exception):
    """The pipeline could not be submitted (nothing was queued): not in a git repository,
    uncommitted pipeline files, or what the binary or the server said."""


class SubmitFailed(Exception):
    """A run submitted with `wait=True` ended other than `succeeded` (or `skipped`).

    `run_id`, `status` (the run's status word) and `errors` (task id -> error, for each
    task that failed; the run's own error under `""` when it failed before any task ran).
    """

    def __init__(self, run_id: str, status: str, errors: dict[str, str]) -> None:
        self.run_id = run_id
        self.status = status
        self.errors = errors
        lines = [f"run {run_id} {status}"]
        lines += [f"  {task or 'run'}: {error}" for task, error in sorted(errors.items())]
        super().__init__("\n".join(lines))


def _git(args: list[str], cwd: str) -> tuple[int, str, str]:
    import subprocess

    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as e:
        raise SubmitError("cs.submit needs git on PATH to find the commit to run") from e
    # stdout as git wrote it (a porcelain line may begin with a space); stderr trimmed.
    return proc.returncode, proc.stdout, proc.stderr.strip()


def _pipeline_files(lowered: Any, top: str) -> list[str]:
    """The files the pipeline is made of, relative to `top`: where each task was called
    and where each task's function is defined (when inside the repository)."""
    import base64
    import json
    import os
    import sys

    files: set[str] = set()

    def add(path: str | None) -> None:
        if not path:
            return
        absolute = os.path.realpath(os.path.join(top, path))
        if absolute.startswith(top.rstrip(os.sep) + os.sep):
            files.add(os.path.relpath(absolute, top))

    for site in lowered.sources.values():
        add(site.get("file"))
    for job in lowered.document.get("jobs", {}).values():
        text = job.get("env", {}).get("CSPY_TASK")
        if not isinstance(text, str):
            continue
        spec = json.loads(text)
        if "b64" in spec:
            spec = json.loads(base64.b64decode(spec["b64"]))
        entry = str(spec.get("entry", "")).rpartition(":")[0]
        if entry.endswith(".py"):
            add(entry)
        else:
            add(getattr(sys.modules.get(entry), "__file__", None))
    return sorted(files)


def _check_tree(lowered: Any, top: str, commit: str | None) -> None:
    """Refuses to submit `HEAD` while the pipeline's files differ from it (the server would
    run other code than the one just rendered); warns when an explicit `commit` differs."""
    import warnings

    files = _pipeline_files(lowered, top)
    if not files:
        return
    if commit is None:
        _, changed, _ = _git(["status", "--porcelain", "--", *files], top)
        if changed.strip():
            listed = ", ".join(line[3:] for line in changed.splitlines() if line)
            raise SubmitError(
                f"the pipeline's files have changes that are not committed ({listed}); the "
                "server runs the commit, not this working tree: commit (and push) them, "
                "or pass commit= to run a commit as it is"
            )
        return
    # `--end-of-options`: a commit= such as `--output=FILE` is a revision, never an option.
    code, _, _ = _git(["diff", "--quiet", "--end-of-options", commit, "--", *files], top)
    if code != 0:
        warnings.warn(
            f"the pipeline's files here differ from commit {commit}; the server runs them "
            "as they are at that commit",
            stacklevel=3,
        )


def _request(server: str, path: str, token: str | None) -> Any:
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(server.rstrip("/") + path)
    if token:
        # Not copied onto a redirect: a 30x to another host must not receive the token.
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as e:
        said = e.read().decode("utf-8", "replace").strip()
        raise SubmitError(f"GET {path}: the server answered {e.code}: {said}") from e
    except urllib.error.URLError as e:
        raise SubmitError(f"cannot reach {server}: {e.reason}") from e


def _wait(server: str, token: str | None, run_id: str) -> None:
    import time
    import urllib.parse

    path = f"/api/v1/runs/{urllib.parse.quote(run_id, safe='')}"
    while True:
        answer = _request(server, path, token)
        status = str(answer.get("run", {}).get("status", ""))
        if status in ("succeeded", "skipped"):
            return
        if status in ("failed", "cancelled"):
            errors = {
                str(t.get("task_id")): str(t.get("error") or t.get("status"))
                for t in answer.get("tasks", [])
                if t.get("status") == "failed"
            }
            if answer["run"].get("error"):
                errors[""] = str(answer["run"]["error"])
            raise SubmitFailed(run_id, status, errors)
        time.sleep(POLL_SECONDS)


def submit(
    target: LazyResult[Any] | Callable[[], Any],
    server: str,
    token: str | None = None,
    repository: str | None = None,
    commit: str | None = None,
    params: Mapping[str, Any] | None = None,
    wait: bool = False,
) -> str:
    """Sends the pipeline that computes `target` to the `cascade serve` at `server`, to run
    at a commit of one of its registered repositories; returns the run id.

    Call it from the top of the repository's working tree (tasks are found by paths from
    there, on the server as here). `commit`: any git revision, resolved here (default
    `HEAD`; then the pipeline's files must have no uncommitted changes, and a commit must
    have been pushed where the server clones from). `repository`: the server's name for it
    (`acme/app`) or its URL (default: the `origin` remote, which the server matches against
    its repositories' URLs). `token`: the API token (default `CASCADE_TOKEN`); it needs
    role `submit` in the repository's scope (`project:<name with / as ->`). `params`: the
    pipeline's `cs.Param` values. `wait=True` waits for the run to end and raises
    `SubmitFailed` (with each failed task's error) unless it succeeded; results stay on
    the server (`cascade dag logs`, `GET /api/v1/runs/{id}`).
    """
    import json
    import os
    import subprocess
    import tempfile

    from ._binary import find_binary
    from ._lower import lower

    cwd = os.getcwd()
    code, top, said = _git(["rev-parse", "--show-toplevel"], cwd)
    top = top.strip()
    if code != 0:
        raise SubmitError(
            f"cs.submit runs from a git working tree, and {cwd} is not in one ({said}); "
            "the server runs a commit of a repository it has registered"
        )
    if os.path.realpath(top) != os.path.realpath(cwd):
        raise SubmitError(
            f"cs.submit runs from the top of the repository ({top}), not {cwd}: the tasks' "
            "entry points are paths from the working directory, and the server runs them "
            "from the top of its checkout"
        )
    lowered = lower(target)
    _check_tree(lowered, os.path.realpath(top), commit)
    env = dict(os.environ)
    if token is not None:
        env["CASCADE_TOKEN"] = token
    with tempfile.TemporaryDirectory(prefix="cascade-submit-") as scratch:
        name = str(lowered.document.get("name") or "pipeline")
        document = os.path.join(scratch, f"{name}.yaml")
        with open(document, "w", encoding="utf-8") as f:
            # JSON is YAML; a `.json` file could be read as a DAG submission.
            json.dump(lowered.document, f, indent=2)
        args = [find_binary(), "dag", "submit", document, "--server", server]
        args += ["--output", "json", "--commit", commit or "HEAD"]
        if repository is not None:
            args += ["--repository", repository]
        for key, value in (params or {}).items():
            args += ["--input", f"{key}={json.dumps(value)}"]
        proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SubmitError(proc.stderr.strip() or f"cascade dag submit exited {proc.returncode}")
    try:
        run_id = str(json.loads(proc.stdout)["run_id"])
    except (ValueError, KeyError, TypeError) as e:
        raise SubmitError(f"cascade dag submit answered {proc.stdout!r}, not a run") from e
    if wait:
        _wait(server, env.get("CASCADE_TOKEN"), run_id)
    return run_id
