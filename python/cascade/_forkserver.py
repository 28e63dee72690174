"""`python -m cascade._forkserver`: a warm runner, the interpreter local Python tasks fork.

`cascade run` starts one per pipeline module (and job environment) its Python tasks use.
The server imports `cascade.runner` and that module once, then forks a child per task
attempt. The child becomes the process `python -m cascade.runner` would have been: its
own process group, the attempt's pipes as standard input, output and error, the job's
environment (plus what the interpreter's start and the module's import add to it, as in
a cold task process, and nothing of another task's) and working directory, the
interpreter's default signal handlers; it
runs the runner's `run()` and exits as a fresh process would as far as a task can tell
(non-daemon threads joined, atexit handlers run, buffered output flushed).

The engine talks to the server over its standard input, a Unix stream socket:
- engine -> server: one JSON line per attempt, `{"id": N, "env": [[name, value], ...],
  "cwd": "..."}`, whose first byte carries four file descriptors (SCM_RIGHTS): the
  child's stdin, stdout and stderr, and the read end of a *go* pipe.
- server -> engine: `{"ready": true}` once the module is imported, then per attempt
  `{"id": N, "pid": P}` (or `{"id": N, "error": "..."}`), and when the child has ended
  `{"id": N, "exit": CODE}` or `{"id": N, "signal": SIG}`.
The child waits on the go pipe before it runs anything: the engine writes to it once the
child's group is registered to die with the engine, and end of file (the engine is gone)
makes the child exit at once. End of file on the socket ends the server, after it killed
the groups of the children still running.

It imports only what forking needs (`selectors`, `socket`, `signal`): the pipeline's
own modules are what it exists to hold.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys

from . import runner

TYPE_CHECKING = False
if TYPE_CHECKING:
    import selectors
    from typing import NoReturn

_FDS_PER_REQUEST = 4
_MAX_REQUEST = 64 * 1024 * 1024


def _usage(message: str) -> int:
    sys.stderr.write(
        f"error: {message}\n"
        "usage: python -m cascade._forkserver --preload MODULE [--path DIR]\n"
        "(started by `cascade run` with a socket as standard input; not meant to be run by hand)\n"
    )
    return 2


def _send(conn: socket.socket, message: dict[str, object]) -> None:
    try:
        conn.setblocking(True)
        conn.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass
    finally:
        conn.setblocking(False)


def main(argv: list[str]) -> int:
    preload: str | None = None
    path: str | None = None
    rest = list(argv)
    while rest:
        flag = rest.pop(0)
        if flag in ("--preload", "--path") and rest:
            value = rest.pop(0)
            if flag == "--preload":
                preload = value
            else:
                path = value
        else:
            return _usage(f"unexpected argument {flag!r}")
    if preload is None:
        return _usage("--preload MODULE is required")
    try:
        conn = socket.socket(fileno=os.dup(0))
    except OSError as e:
        return _usage(f"standard input is not a socket ({e})")
    if conn.family != socket.AF_UNIX:
        return _usage("standard input is not a Unix socket")
    # The environment as the interpreter's start left it (a launcher such as pyenv's
    # shim, or the C locale coercion of PEP 538, may have added variables), then what
    # importing the module changed: a cold task process has both on top of the job's.
    started = dict(os.environ)
    # An import error ends the server; the engine then starts the tasks cold, which
    # shows the error in the task's log. The import runs marked as a task process (as a
    # cold task's does), so a module that calls cs.run() unguarded is refused here too
    # instead of starting a run from the server.
    os.environ["CSPY_TASK"] = f"(warm runner of {preload})"
    try:
        runner.load_module(preload, path)
    finally:
        del os.environ["CSPY_TASK"]
    imported = dict(os.environ)
    changed = {k: v for k, v in imported.items() if started.get(k) != v}
    removed = [k for k in started if k not in imported]
    return _serve(conn, _Environ(started, changed, removed))


class _Environ:
    """A child's environment from the job's: what a cold task process would have."""

    def __init__(self, started: dict[str, str], changed: dict[str, str], removed: list[str]):
        self.started = started
        self.changed = changed
        self.removed = removed

    def of(self, job: dict[str, str]) -> dict[str, str]:
        # The server was started with the job's environment but for the variables of
        # one task (its ids and arguments): where `started` differs from the job's,
        # the interpreter's start changed it, as it would a cold task's.
        env = {**job, **self.started, **self.changed}
        for name in self.removed:
            env.pop(name, None)
        return env


def _serve(conn: socket.socket, environ: _Environ) -> int:
    import gc
    import selectors

    # Nothing of the server's own reaches the engine's pipes or the terminal.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    sys.stdout.flush()
    sys.stderr.flush()

    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    # The server is in a group of its own (the terminal's Ctrl-C misses it); it ends by
    # end of file or SIGKILL, never by an interrupt half-way through a fork.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    conn.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ, "conn")
    selector.register(wake_r, selectors.EVENT_READ, "wake")
    _send(conn, {"ready": True})

    children: dict[int, int] = {}  # pid -> request id
    buffer = bytearray()
    fds: list[int] = []
    # Forked children share the imported modules' pages until they write to them.
    gc.freeze()
    while True:
        for key, _ in selector.select():
            if key.data == "wake":
                try:
                    while wake_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
                _reap(conn, children)
                continue
            try:
                data, got, _, _ = socket.recv_fds(conn, 1 << 16, 16)
            except BlockingIOError:
                continue
            except OSError:
                data, got = b"", []
            fds.extend(got)
            if not data:
                for fd in fds:
                    os.close(fd)
                _stop(children)
                return 0
            buffer += data
            if len(buffer) > _MAX_REQUEST:
                _stop(children)
                return 1
            while b"\n" in buffer:
                line, _, remainder = bytes(buffer).partition(b"\n")
                buffer = bytearray(remainder)
                mine, fds = fds[:_FDS_PER_REQUEST], fds[_FDS_PER_REQUEST:]
                _fork(line, mine, fds, environ, conn, children, selector, (wake_r, wake_w))


def _fork(
    line: bytes,
    fds: list[int],
    queued: list[int],
    environ: _Environ,
    conn: socket.socket,
    children: dict[int, int],
    selector: selectors.BaseSelector,
    wake: tuple[socket.socket, socket.socket],
) -> None:
    """Forks the child of one request (which runs the task and exits; `queued` are the
    descriptors of later requests, which it closes)."""
    try:
        request = json.loads(line)
        ident = int(request["id"])
        env = environ.of({str(k): str(v) for k, v in request["env"]})
        cwd = str(request["cwd"])
    except (ValueError, KeyError, TypeError) as e:
        for fd in fds:
            os.close(fd)
        _send(conn, {"id": -1, "error": f"not a request ({type(e).__name__}: {e})"})
        return None
    if len(fds) != _FDS_PER_REQUEST:
        for fd in fds:
            os.close(fd)
        _send(conn, {"id": ident, "error": f"expected 4 file descriptors, got {len(fds)}"})
        return None
    pid = os.fork()
    if pid == 0:
        for fd in queued:
            os.close(fd)
        _child(env, cwd, fds, conn, selector, wake)
    # Also set in the child: whichever runs first, the group exists before the engine
    # hears the pid.
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    for fd in fds:
        os.close(fd)
    children[pid] = ident
    _send(conn, {"id": ident, "pid": pid})
    return None


def _child(
    env: dict[str, str],
    cwd: str,
    fds: list[int],
    conn: socket.socket,
    selector: selectors.BaseSelector,
    wake: tuple[socket.socket, socket.socket],
) -> NoReturn:
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    selector.close()
    conn.close()
    for s in wake:
        s.close()
    stdin, stdout, stderr, go = fds
    # Nothing runs before the engine has registered this group (end of file: the engine
    # is gone, and so is the task).
    try:
        ready = os.read(go, 1)
    except OSError:
        ready = b""
    if not ready:
        os._exit(1)
    os.close(go)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
    for fd in {stdin, stdout, stderr}:
        if fd > 2:
            os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = [os.path.abspath(runner.__file__)]
    try:
        code = runner.run()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    _exit(code)


def _exit(code: int) -> NoReturn:
    """Ends the child as a normal exit would, as far as a task can tell: non-daemon
    threads joined, atexit handlers run, output flushed. Not the interpreter's own
    teardown: that visits every object the server imported, copying each page a fork
    shares (tens of milliseconds per task, most of a no-op task's cost)."""
    threading = sys.modules.get("threading")
    shutdown = getattr(threading, "_shutdown", None)
    try:
        if shutdown is not None:
            shutdown()
        import atexit

        atexit._run_exitfuncs()
    except BaseException as e:
        if isinstance(e, SystemExit):
            code = e.code if isinstance(e.code, int) else 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _reap(conn: socket.socket, children: dict[int, int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        ident = children.pop(pid, None)
        if ident is None:
            continue
        if os.WIFSIGNALED(status):
            _send(conn, {"id": ident, "signal": os.WTERMSIG(status)})
        else:
            _send(conn, {"id": ident, "exit": os.waitstatus_to_exitcode(status)})


def _stop(children: dict[int, int]) -> None:
    """The engine is gone: so are the tasks it started."""
    for pid in children:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
