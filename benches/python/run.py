#!/usr/bin/env python3
"""Runs W1 and W2 of issue 15 on every system side by side, in one invocation, and prints
the table: wall time (min, median), the median's ratio to the fork floor, Prefect's
median over the system's, and the peak RSS.

Runs are interleaved: after one warm-up run of each system, round k runs every system
once, in an order rotated by k, so a machine whose speed drifts moves every system alike.
Each run is one whole command (start-up included), timed from just before its start to
just after it is reaped. Peak RSS is GNU time's `%M` of the command: the largest single
process among the command and the processes it waited for, which for every system here
is the orchestrating process (the interpreter that runs the flow, or `cascade run`). A command that fails or passes --timeout is shown
as such and not run again; a system that cannot run here (not installed) is skipped with
the reason.

usage: run.py [--runs N] [--warmup N] [--timeout S] [--only a,b] [--workloads w1,w2]
              [--json FILE]
Environment: CASCADE_BIN (the cascade binary), PYTHON (the interpreter of the floors and
of the Cascade SDK scripts, default python3), CASCADE_SDK (a folder holding the `cascade`
package, put on PYTHONPATH of the Cascade SDK systems only; default: the installed one),
PEER_PYTHON (the venv with prefect, dask, luigi; default benches/python/.venv/bin/python).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FLOOR = "fork-floor"


@dataclass
class System:
    name: str
    # The command of each workload (argv), or None when the system has no form of it.
    commands: dict[str, list[str]]
    cwd: str = HERE
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""
    skipped: str = ""  # why it cannot run here
    # Checked after each run, untimed: "" when the run's result is right, else what is wrong.
    verify: Callable[[str], str] | None = None


@dataclass
class Result:
    walls: list[float] = field(default_factory=list)
    peaks_kib: list[int] = field(default_factory=list)
    failure: str = ""


TIME = "/usr/bin/time"


def measure(
    argv: list[str], cwd: str, env: dict[str, str], timeout: float, work: str
) -> tuple[float, int, str]:
    """Runs argv once: (wall seconds, peak RSS KiB, failure or "").

    The command is started by GNU time (`/usr/bin/time -f %M`), whose peak is the largest
    single process it waited for. Started straight from this interpreter, a child's peak
    could not read below this interpreter's own size: the child's first image is a copy of
    its parent's, and the kernel keeps the high-water mark across `exec`."""
    full_env = {**os.environ, **env}
    rss_file = os.path.join(work, "rss")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(rss_file)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [TIME, "-f", "%M", "-o", rss_file, *argv],
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    # stderr is drained on a thread so a chatty command never blocks on a full pipe;
    # only its tail is kept, to show why a run failed.
    tail: list[bytes] = []

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line)
            del tail[:-20]

    reader = threading.Thread(target=drain, daemon=True)
    timer.start()
    reader.start()
    try:
        returncode = proc.wait()
        wall = time.perf_counter() - start
    finally:
        timer.cancel()
        # What the command left running in its group (a server it forgot) ends with it;
        # so does the command itself when this wait was interrupted.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(timeout=5)
    peak = 0
    with contextlib.suppress(OSError, ValueError, IndexError), open(rss_file) as f:
        peak = int(f.read().split()[-1])
    failure = ""
    if timed_out.is_set():
        failure = f"timed out after {timeout:.0f} s"
    elif returncode != 0:
        text = b"".join(tail).decode(errors="replace").strip().splitlines()
        failure = f"exit {returncode}: " + (text[-1] if text else "(no stderr)")
    return wall, peak, failure


def can_import(python: str, code: str, env: dict[str, str]) -> str:
    """ "" when `python -c code` succeeds, else why not."""
    if shutil.which(python) is None and not os.path.exists(python):
        return f"{python} not found"
    done = subprocess.run(
        [python, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return lines[-1] if lines else f"{python} -c {code!r} failed"
    return ""


def find_cascade() -> str | None:
    candidates = [
        os.environ.get("CASCADE_BIN", ""),
        os.path.join(ROOT, "target", "release", "cascade"),
        os.path.join(ROOT, "target", "debug", "cascade"),
        shutil.which("cascade") or "",
    ]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return os.path.abspath(c)
    return None


class PrefectServer:
    """`prefect server start` on a free loopback port, for the "server" form of Prefect."""

    def __init__(self, python: str, home: str) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.log = open(os.path.join(home, "server.log"), "wb")  # noqa: SIM115 - closed in stop()
        env = {
            **os.environ,
            "PREFECT_HOME": home,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
        env.pop("PREFECT_API_URL", None)
        self.proc = subprocess.Popen(
            [
                python,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"prefect server exited with {self.proc.returncode} (see its log)"
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return ""
            except OSError:
                pass
            time.sleep(0.5)
        return f"prefect server not healthy after {timeout:.0f} s"

    def rss_kib(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def systems(work: str, wanted: set[str] | None) -> tuple[list[System], PrefectServer | None]:
    python = os.environ.get("PYTHON", "python3")
    peer = os.environ.get("PEER_PYTHON", os.path.join(HERE, ".venv", "bin", "python"))
    out: list[System] = []

    def want(name: str) -> bool:
        return wanted is None or name in wanted

    out.append(
        System(
            FLOOR,
            {w: [python, "floor_fork.py", w] for w in ("w1", "w2")},
            note="os.fork per task of an interpreter that imported the task module; 2 in flight (W1), sequential (W2)",
        )
    )
    out.append(
        System(
            "fork-pool",
            {w: [python, "floor_fork.py", w, "--pool"] for w in ("w1", "w2")},
            note="multiprocessing fork context, Pool(2, maxtasksperchild=1): a new forked worker per task",
        )
    )
    out.append(
        System(
            "fresh-interpreters",
            {w: [python, "floor_fresh.py", w] for w in ("w1", "w2")},
            note=f"`{python} -c` per task; 2 in flight (W1), sequential (W2)",
        )
    )

    cascade = find_cascade()
    yaml_dir = os.path.join(work, "yaml")
    subprocess.run([python, os.path.join(HERE, "cascade_yaml.py"), yaml_dir], check=True)
    yaml = System(
        "cascade-yaml",
        {
            w: [
                cascade or "cascade",
                "run",
                os.path.join(yaml_dir, f"{w}.yaml"),
                "--data-dir",
                os.path.join(work, "cascade-yaml-data"),
                "-j2",
                "--output",
                "json",
            ]
            for w in ("w1", "w2")
        },
        note=f"`cascade run ci.yaml -j2 --output json`, plain shell jobs, binary {cascade}",
    )
    if cascade is None:
        yaml.skipped = "no cascade binary (CASCADE_BIN, target/release, target/debug, PATH)"
    out.append(yaml)

    # The SDK's own form: `python3 cascade_w1.py` (cs.run), run from the repository root.
    sdk_env = {"CASCADE_BIN": cascade} if cascade else {}
    if os.environ.get("CASCADE_SDK"):  # an SDK source tree not installed (its python/ folder)
        sdk_env["PYTHONPATH"] = os.path.abspath(os.environ["CASCADE_SDK"])
    sdk = System(
        "cascade-py",
        {w: [python, os.path.join("benches", "python", f"cascade_{w}.py")] for w in ("w1", "w2")},
        cwd=ROOT,
        env=sdk_env,
        note="`python3 benches/python/cascade_wN.py` from the repository root: cs.run on the local engine",
    )
    if want(sdk.name):
        sdk.skipped = can_import(python, "import cascade; cascade.run", sdk_env)
    out.append(sdk)

    # Until cs.run lands: the SDK's rendering (`python3 -m cascade render`), run by the
    # binary, the tasks started by `python3 -m cascade.runner` as the document says.
    rendered = System(
        "cascade-rendered",
        {
            w: [
                python,
                os.path.join("benches", "python", "cascade_rendered.py"),
                w,
                os.path.join(work, "cascade-rendered-data"),
            ]
            for w in ("w1", "w2")
        },
        cwd=ROOT,
        env=sdk_env,
        note="`python3 -m cascade render` then `cascade run` of the document (what `cascade run file.py:w1` does)",
    )
    if cascade is None:
        rendered.skipped = yaml.skipped
    elif want(rendered.name):
        rendered.skipped = can_import(
            python, "import cascade, cascade.runner; cascade.render", sdk_env
        )
    out.append(rendered)

    # The binary's own form: `cascade run benches/python/cascade_wN.py:wN` (it renders
    # through `python3 -m cascade render`); the target's value is read from --summary.
    def summary_check(w: str) -> str:
        target, expected = ("fanin", 1000) if w == "w1" else ("inc_200", 200)
        try:
            with open(os.path.join(work, f"cli-summary-{w}.json")) as f:
                value = json.loads(json.load(f)["jobs"][target]["outputs"]["result"])
        except (OSError, KeyError, TypeError, ValueError) as e:
            return f"no result of {target} in the --summary file ({e!r})"
        return "" if value == expected else f"{target} returned {value!r}, expected {expected}"

    cli = System(
        "cascade-cli-py",
        {
            w: [
                cascade or "cascade",
                "run",
                f"benches/python/cascade_{w}.py:{w}",
                "--data-dir",
                os.path.join(work, "cascade-cli-py-data"),
                "-j2",
                "--output",
                "json",
                "--summary",
                os.path.join(work, f"cli-summary-{w}.json"),
            ]
            for w in ("w1", "w2")
        },
        cwd=ROOT,
        env={**sdk_env, "CASCADE_PYTHON": python},
        note="`cascade run benches/python/cascade_wN.py:wN -j2 --output json`: the binary renders the Python file itself",
        verify=summary_check,
    )
    if cascade is None:
        cli.skipped = yaml.skipped
    elif want(cli.name):
        probe = subprocess.run(
            [cascade, "validate", "benches/python/cascade_w2.py:w2"],
            cwd=ROOT,
            env={**os.environ, **cli.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if probe.returncode != 0:
            lines = [line for line in probe.stderr.splitlines() if line.strip()]
            cli.skipped = "this binary cannot run a .py pipeline: " + (
                lines[-1].strip() if lines else f"validate exit {probe.returncode}"
            )
    out.append(cli)

    peer_missing = ""
    if not os.path.exists(peer):
        peer_missing = f"{peer} missing: run benches/python/setup.sh"

    def peer_skip(module: str, *names: str) -> str:
        if peer_missing:
            return peer_missing
        return can_import(peer, f"import {module}", {}) if any(want(n) for n in names) else ""

    dask_skip = peer_skip("dask", "dask-threads", "dask-processes")
    out.append(
        System(
            "dask-threads",
            {w: [peer, "peer_dask.py", w, "threads"] for w in ("w1", "w2")},
            note="dask.delayed, the default (threaded) scheduler: a pool of 2 threads",
            skipped=dask_skip,
        )
    )
    out.append(
        System(
            "dask-processes",
            {w: [peer, "peer_dask.py", w, "processes"] for w in ("w1", "w2")},
            note="dask.delayed, scheduler='processes', num_workers=2",
            skipped=dask_skip,
        )
    )
    out.append(
        System(
            "luigi",
            {w: [peer, "peer_luigi.py", w, os.path.join(work, f"luigi-{w}")] for w in ("w1", "w2")},
            note="local scheduler, workers=2 (a forked process per task)",
            skipped=peer_skip("luigi", "luigi"),
        )
    )

    prefect_skip = peer_skip("prefect", "prefect-ephemeral", "prefect-server")
    home_eph = os.path.join(work, "prefect-ephemeral")
    home_srv = os.path.join(work, "prefect-server")
    os.makedirs(home_eph, exist_ok=True)
    os.makedirs(home_srv, exist_ok=True)
    base_env = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    out.append(
        System(
            "prefect-ephemeral",
            {w: [peer, "peer_prefect.py", w] for w in ("w1", "w2")},
            env={
                **base_env,
                "PREFECT_HOME": home_eph,
                "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
            },
            note="no PREFECT_API_URL: each run starts Prefect's temporary local server itself",
            skipped=prefect_skip,
        )
    )
    server: PrefectServer | None = None
    srv = System(
        "prefect-server",
        {w: [peer, "peer_prefect.py", w] for w in ("w1", "w2")},
        env={**base_env, "PREFECT_HOME": home_srv},
        note="PREFECT_API_URL to one `prefect server start` kept running for the whole benchmark",
        skipped=prefect_skip,
    )
    if not srv.skipped and want(srv.name):
        server = PrefectServer(peer, home_srv)
        why = server.wait_ready(180)
        if why:
            srv.skipped = why
            server.stop()
            server = None
        else:
            srv.env["PREFECT_API_URL"] = server.url
    out.append(srv)
    if wanted is not None:
        unknown = wanted - {s.name for s in out}
        if unknown:
            raise SystemExit(f"unknown systems {sorted(unknown)}; known: {[s.name for s in out]}")
        out = [s for s in out if s.name in wanted]
    return out, server


def fmt_s(x: float) -> str:
    return f"{x:.3f} s" if x < 10 else f"{x:.2f} s"


def table(workload: str, results: dict[str, Result], ordered: list[System]) -> list[str]:
    def median(name: str) -> float | None:
        r = results.get(name)
        return statistics.median(r.walls) if r and r.walls else None

    floor = median(FLOOR)
    pe, ps = median("prefect-ephemeral"), median("prefect-server")
    lines = [
        f"### {workload.upper()}",
        "",
        "| system | runs | wall min | wall median | × fork floor | prefect (server) ÷ this | prefect (ephemeral) ÷ this | peak RSS (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in ordered:
        if s.skipped:
            lines.append(f"| {s.name} | skipped: {s.skipped} | | | | | | |")
            continue
        r = results[s.name]
        if not r.walls:
            lines.append(f"| {s.name} | failed: {r.failure} | | | | | | |")
            continue
        m = statistics.median(r.walls)
        runs = str(len(r.walls)) + (f" (then {r.failure})" if r.failure else "")
        ratio = f"{m / floor:.2f}" if floor else "—"
        rps = f"{ps / m:.1f}" if ps else "—"
        rpe = f"{pe / m:.1f}" if pe else "—"
        rss = statistics.median(r.peaks_kib) / 1024
        lines.append(
            f"| {s.name} | {runs} | {fmt_s(min(r.walls))} | {fmt_s(m)} | {ratio} | {rps} | {rpe} | {rss:.0f} MiB |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="counted runs per system (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs first (default 1)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run (default 300)")
    parser.add_argument("--only", help="comma-separated system names")
    parser.add_argument("--workloads", default="w1,w2")
    parser.add_argument("--json", help="also write every measurement to this file")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    workloads = [w for w in args.workloads.split(",") if w]
    if any(w not in ("w1", "w2") for w in workloads):
        raise SystemExit("--workloads takes w1, w2 or w1,w2")

    # Only the "prefect-server" system talks to a server; the rest of Prefect's setup is
    # each system's own environment.
    os.environ.pop("PREFECT_API_URL", None)
    if not os.access(TIME, os.X_OK):
        raise SystemExit(f"{TIME} is needed for the peak RSS (Debian: apt-get install time)")
    work = tempfile.mkdtemp(prefix="cascade-bench-py-")
    server = None
    try:
        ordered, server = systems(work, wanted)
        runnable = [s for s in ordered if not s.skipped]
        print(
            f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}",
            file=sys.stderr,
        )
        all_results: dict[str, dict[str, Result]] = {}
        for w in workloads:
            results = {s.name: Result() for s in runnable}
            for k in range(args.warmup + args.runs):
                turn = (
                    runnable[k % len(runnable) :] + runnable[: k % len(runnable)]
                    if runnable
                    else []
                )
                for s in turn:
                    r = results[s.name]
                    if r.failure:
                        continue
                    wall, peak, failure = measure(s.commands[w], s.cwd, s.env, args.timeout, work)
                    if not failure and s.verify is not None:
                        failure = s.verify(w)
                    counted = k >= args.warmup
                    print(
                        f"{w} {'run' if counted else 'warm-up'} {k + 1 - args.warmup if counted else k + 1}: "
                        f"{s.name}: {wall:.3f} s, {peak / 1024:.0f} MiB{' ' + failure if failure else ''}",
                        file=sys.stderr,
                        flush=True,
                    )
                    if failure:
                        r.failure = failure
                    elif counted:
                        r.walls.append(wall)
                        r.peaks_kib.append(peak)
            all_results[w] = results
            print("\n".join(table(w, results, ordered)) + "\n", flush=True)
        if server is not None:
            print(
                f"prefect server (separate process, not in the figures above): peak RSS {server.rss_kib() / 1024:.0f} MiB\n"
            )
        print(f"load average at the end: {os.getloadavg()[0]:.1f}; systems:")
        for s in ordered:
            print(f"- {s.name}: {s.note}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(
                    {w: {n: r.__dict__ for n, r in res.items()} for w, res in all_results.items()},
                    f,
                    indent=1,
                )
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
