"""`cs.shell`: run a command from a task, streaming its output to the task log.

One function serves sync and async tasks. Python cannot see whether a call is awaited,
but it can see whether an asyncio event loop is running in the calling thread, and that
decides what `shell()` does:

- No running loop in this thread (a sync task, a script, a thread started with
  `asyncio.to_thread`): the command runs at once and `shell()` returns a `ShellResult`,
  a `str` holding the command's stdout.
- A running loop in this thread (an `async def` task): `shell()` checks its arguments
  and returns a pending command that runs, through asyncio's subprocess support and
  without blocking the loop, when it is awaited (`out = await cs.shell(...)`). Using
  it without awaiting (as a string, in an `if`, ...) raises `TypeError` with a hint,
  and dropping it unawaited warns, as an unawaited coroutine does.

Running the command synchronously inside a running loop would stall every other task of
that loop, so a sync helper that calls `cs.shell` from an async task must be called with
`await asyncio.to_thread(helper)`. The static type of `shell()` is `ShellResult` in both
cases, so `out: str = cs.shell(...)` and `out: str = await cs.shell(...)` both
type-check; the pending object of the async case is deliberately not a `str`, so a
forgotten `await` fails loudly at its first use instead of reading as an empty string.

The child's stdout and stderr are copied, line by line as they arrive, to this
process's stdout and stderr: for a task that is the task log, which the engine masks.
The child gets its own session (`start_new_session`), so a timeout can kill everything
it started; its environment is this process's plus `env=`, so it keeps the engine's
tracking marker and the engine still stops what it leaves behind when the task ends.
"""

from __future__ import annotations

import os
import sys

# A task process imports this package, so nothing costly is imported here: asyncio,
# subprocess and the rest are imported when a command runs (asyncio only for an awaited
# one), and typing only by the type checker.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    import signal
    import subprocess
    from collections.abc import Awaitable, Generator, Mapping, Sequence
    from typing import IO, Any, NoReturn, TextIO, TypeAlias, overload

    ShellValue: TypeAlias = str | int | float | os.PathLike[str]
    """A value a `{name}` placeholder takes: quoted as one shell word."""

    StrPath: TypeAlias = str | os.PathLike[str]


__all__ = ["PendingShell", "ShellError", "ShellResult", "shell"]

TAIL_LINES = 20
"""How many lines of stderr a `ShellError` keeps."""

KILL_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL when a timeout stops a command."""

_CHUNK = 65536
_OWN_OPTIONS = ("check", "cwd", "env", "timeout")
_HINT = (
    "await cs.shell(...) in an async task; a sync function that calls cs.shell from an "
    "async task runs it with `await asyncio.to_thread(function)`"
)


class ShellResult(str):
    """The stdout of a finished command (decoded as UTF-8, bad bytes replaced).

    A `str`, so it is used as one (`out.splitlines()`, returned from a task as JSON);
    `returncode` tells a `check=False` caller how the command ended and `cmd` is the
    command as run.

    To the type checker a `ShellResult` is also awaitable (giving itself), which is how
    `await cs.shell(...)` in an async task and `out: str = cs.shell(...)` in a sync one
    both type-check with one return type. At run time it is a plain `str`, not an
    awaitable: where code can await, a loop is running and `shell()` returned a
    `PendingShell` instead, and a str that looked awaitable would fool every runner or
    framework that awaits what a function returned (a sync task may return
    `cs.shell(...)` itself).
    """

    returncode: int
    cmd: str | list[str]

    def __new__(cls, stdout: str, *, returncode: int, cmd: str | list[str]) -> ShellResult:
        self = super().__new__(cls, stdout)
        self.returncode = returncode
        self.cmd = cmd
        return self

    if TYPE_CHECKING:

        def __await__(self) -> Generator[Any, None, ShellResult]: ...

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_result, (str(self), self.returncode, self.cmd))


def _rebuild_result(stdout: str, returncode: int, cmd: str | list[str]) -> ShellResult:
    return ShellResult(stdout, returncode=returncode, cmd=cmd)


class ShellError(Exception):
    """A command run by `cs.shell` exited non-zero, was killed, timed out or could not start.

    `returncode` is the exit code (negative: killed by that signal; 127/126: the
    program was not found / not executable), `cmd` the command as run (the filled-in
    string, or the argv list), `stdout` everything it printed on stdout, `stderr_tail`
    its last lines of stderr (all of stderr is in the task log), `timed_out` whether
    `timeout=` stopped it.
    """

    def __init__(
        self,
        message: str,
        *,
        cmd: str | list[str],
        returncode: int,
        stdout: str = "",
        stderr_tail: str = "",
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.cmd = cmd
        self.returncode = returncode
        self.stdout = stdout
        self.stderr_tail = stderr_tail
        self.timed_out = timed_out

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_error,
            (
                self.message,
                self.cmd,
                self.returncode,
                self.stdout,
                self.stderr_tail,
                self.timed_out,
            ),
        )


def _rebuild_error(
    message: str,
    cmd: str | list[str],
    returncode: int,
    stdout: str,
    stderr_tail: str,
    timed_out: bool,
) -> ShellError:
    return ShellError(
        message,
        cmd=cmd,
        returncode=returncode,
        stdout=stdout,
        stderr_tail=stderr_tail,
        timed_out=timed_out,
    )


if TYPE_CHECKING:  # the overloads, for the type checker only (typing is not imported)

    @overload
    def shell(
        cmd: str,
        /,
        *,
        check: bool = True,
        cwd: StrPath | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | str | None = None,
        **values: ShellValue | Sequence[ShellValue],
    ) -> ShellResult: ...

    @overload
    def shell(
        cmd: Sequence[StrPath],
        /,
        *,
        check: bool = True,
        cwd: StrPath | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | str | None = None,
    ) -> ShellResult: ...


def shell(
    cmd: str | Sequence[StrPath],
    /,
    *,
    check: bool = True,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | str | None = None,
    **values: ShellValue | Sequence[ShellValue],
) -> ShellResult:
    """Run a command, stream its output to the task log and return its stdout.

    `cmd` is either a string, run with `/bin/sh -c` (pipes, `&&`, globs work), or a list,
    run as argv without a shell. In a string, `{name}` is filled from the keyword
    argument `name=`, quoted with `shlex.quote` (str, int, float or a path; a list or
    tuple becomes several quoted words), so the shell that runs `cmd` reads a value as
    one word of data: `cs.shell("ruff check packages/{p}", p=name)`. Quoting cannot
    protect a value that a command parses as code again: after `sh -c`, `bash -c`,
    `eval`, `ssh host …` or `su -c`, and in bash arithmetic (`[[ {n} -gt 0 ]]`, `let`)
    where `/bin/sh` is bash. Pass such values through `env=` and reference the variable
    in the command instead (or use the list form). Literal braces are written `{{` and
    `}}`, as with `str.format` (`awk '{{print $1}}'`, `${{HOME}}`). A placeholder with no
    value, a value with no placeholder, and a placeholder where quoting would not
    protect it (inside quotes, after `$` or `\\`, in a here-document) are errors naming
    it. A list takes no values. `check`, `cwd`, `env` and `timeout` cannot be
    placeholder names.

    The child's stdin is `/dev/null`; its stdout and stderr are copied line by line, as
    they come, to this process's stdout and stderr (the task log, masked by the
    engine). The call ends when the child has exited and its output pipes are closed:
    a background process that keeps them open (`server &`) is waited for unless its
    output is redirected. Returns the stdout as a `ShellResult` (a `str`; stderr is
    not in it). Raises `ShellError` with the exit code and the last lines of stderr
    when the command exits non-zero (unless `check=False`; the code is then
    `result.returncode`), when the program cannot be started, and when it times out.

    `cwd` is the directory to run in; `env` adds variables to (never replaces) this
    process's environment; `timeout` (seconds, or a duration such as "30s", "5m",
    "1h30m") stops the command's whole process group (SIGTERM, then SIGKILL
    `KILL_GRACE` seconds later) and raises `ShellError` saying it timed out.

    Sync or async: with no asyncio loop running in this thread the command runs at once.
    With a loop running (an `async def` task) nothing runs until the result is awaited
    (`out = await cs.shell(...)`), and the loop is not blocked while it runs; the module
    docstring explains why and what a sync helper called from async code must do.
    """
    spec = _Spec.build(cmd, check=check, cwd=cwd, env=env, timeout=timeout, values=values)
    if not _loop_running():
        return spec.run_sync()
    # The static type promises a ShellResult: that is what awaiting this gives.
    pending: Any = PendingShell(spec)
    return pending  # type: ignore[no-any-return]


def _loop_running() -> bool:
    """Whether an asyncio event loop runs in this thread (none can if asyncio was never
    imported, so a sync task never imports it)."""
    aio = sys.modules.get("asyncio")
    return aio is not None and aio._get_running_loop() is not None


class PendingShell:
    """A `cs.shell` command made inside a running event loop: it runs when awaited.

    Awaiting it runs the command and gives its `ShellResult` (or raises `ShellError`);
    it can be awaited once. Any other use raises `TypeError` with a hint.
    """

    __slots__ = ("_spec", "_state")

    def __init__(self, spec: _Spec) -> None:
        self._spec = spec
        self._state = "new"

    def __await__(self) -> Generator[Any, None, ShellResult]:
        if self._state != "new":
            raise RuntimeError(
                f"cs.shell({self._spec.display!r}) was already awaited; "
                "await it once and keep the value"
            )
        self._state = "awaited"
        return self._spec.run_async().__await__()

    def __repr__(self) -> str:
        return f"<cs.shell pending: {self._spec.display!r}; await it to run it>"

    def _misuse(self, *_: object) -> NoReturn:
        self._state = "misused"
        raise TypeError(
            f"cs.shell({self._spec.display!r}) has not run yet: it was called inside a "
            f"running event loop, where it runs only when awaited. {_HINT}"
        )

    __str__ = __bool__ = __len__ = __iter__ = __contains__ = __getitem__ = _misuse
    __lt__ = __le__ = __gt__ = __ge__ = _misuse

    def __eq__(self, other: object) -> bool:
        # Identity for everything but a string: asyncio.gather keys its awaitables in
        # a dict, and a comparison with a string means the await was forgotten.
        if isinstance(other, str):
            self._misuse()
        return self is other

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return id(self)

    __add__ = __radd__ = __mod__ = __format__ = __fspath__ = _misuse

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("_"):
            raise AttributeError(name)
        self._misuse()

    def __del__(self) -> None:
        import contextlib
        import warnings

        state = getattr(self, "_state", "awaited")
        if state == "new":
            with contextlib.suppress(Exception):  # interpreter shutdown
                warnings.warn(
                    f"cs.shell({self._spec.display!r}) was never awaited, so it did not "
                    f"run; {_HINT}",
                    RuntimeWarning,
                    stacklevel=2,
                )


# ---------------------------------------------------------------------------------------
# Arguments


def _parse_timeout(timeout: float | str | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float, str)):
        raise TypeError(
            f"cs.shell: timeout= takes seconds or a duration such as '30s', "
            f"found {type(timeout).__name__}"
        )
    seconds = _parse_duration(timeout) if isinstance(timeout, str) else float(timeout)
    if not seconds > 0:
        raise ValueError(f"cs.shell: timeout= must be more than zero, found {timeout!r}")
    return seconds


def _parse_duration(text: str) -> float:
    """The engine's duration syntax: `500ms`, `30s`, `10m`, `1h30m`, `2d`."""
    from ._duration import seconds

    rest = text.strip()
    if not rest:
        raise ValueError("cs.shell: timeout= is an empty string; write seconds or e.g. '30s'")
    total = seconds(rest)
    if total is None:
        raise ValueError(
            f"cs.shell: timeout={text!r} is not a duration; expected numbers with "
            "units ms, s, m, h or d, such as '30s', '5m' or '1h30m'"
        )
    return total


def _check_env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    if env is None:
        return None
    from collections.abc import Mapping

    if not isinstance(env, Mapping):
        raise TypeError(
            f"cs.shell: env= takes a mapping of names to strings, found {type(env).__name__}"
        )
    merged = dict(os.environ)
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"cs.shell: env= takes strings, found {key!r}: {type(value).__name__}; "
                "convert the value with str()"
            )
        merged[key] = value
    return merged


def _check_cwd(cwd: StrPath | None) -> str | None:
    if cwd is None:
        return None
    path = os.fspath(cwd)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"cs.shell: cwd={path!r} is not a directory")
    return path


def _quote_value(name: str, value: object) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_quote_one(name, item) for item in value)
    return _quote_one(name, value)


def _quote_one(name: str, value: object) -> str:
    import shlex

    if isinstance(value, bool) or not isinstance(value, (str, int, float, os.PathLike)):
        raise TypeError(
            f"cs.shell: the value of {{{name}}} is a {type(value).__name__}; expected a "
            "str, int, float, path, or a list of them (convert it with str() first)"
        )
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if not isinstance(text, str):
        raise TypeError(f"cs.shell: the value of {{{name}}} is a bytes path; pass a str")
    return shlex.quote(text)


def _fill(template: str, values: Mapping[str, object]) -> str:
    """The template with every placeholder replaced by its quoted value."""
    import string

    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(
            f"cs.shell: {e} in {template!r}; a placeholder is {{name}}, and a literal "
            "brace is written {{ or }}"
        ) from None
    names: list[str] = []
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        shown = f"{{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
        if not field.isidentifier() or conversion or spec:
            raise ValueError(
                f"cs.shell: {shown} in {template!r} is not a placeholder; placeholders are "
                "plain {name} filled from name=..., and literal braces are written {{ and }} "
                "(e.g. awk '{{print $1}}', ${{HOME}})"
            )
        names.append(field)
    missing = [n for n in dict.fromkeys(names) if n not in values]
    if missing:
        own = [n for n in missing if n in _OWN_OPTIONS]
        note = (
            f" ({', '.join(own)} {'is' if len(own) == 1 else 'are'} cs.shell's own "
            "option; rename the placeholder)"
            if own
            else ""
        )
        raise ValueError(
            f"cs.shell: placeholder {', '.join('{' + n + '}' for n in missing)} in "
            f"{template!r} has no value; pass {missing[0]}=... (it is quoted for you), or "
            f"write {{{{{missing[0]}}}}} for literal braces{note}"
        )
    unused = [n for n in values if n not in names]
    if unused:
        raise ValueError(
            f"cs.shell: {', '.join(n + '=' for n in unused)} given but {template!r} has no "
            f"placeholder {{{unused[0]}}}"
        )
    _check_placement(template, parts)
    out: list[str] = []
    for literal, field, _, _ in parts:
        out.append(literal)
        if field is not None:
            out.append(_quote_value(field, values[field]))
    return "".join(out)


_HEREDOC = r"<<(-?)[ \t]*(['\"]?)([^\s'\"<>;&|()\x00]+)\2"
_WORD_START = " \t\n;&|()<>"


def _check_placement(
    template: str, parts: list[tuple[str, str | None, str | None, str | None]]
) -> None:
    """Refuses placeholders where a quoted value would not stay one word of data.

    A `shlex.quote`d value is safe only where the shell reads quotes: inside '...' or
    "..." its quotes end the string (and `$(...)` in it would run), after a backslash
    the first quote is escaped, after `$` bash reads `$'...'` as an escape string, and
    a here-document body ignores quotes. The template's literal text is scanned with
    sh's quoting rules, each placeholder standing as a NUL byte.
    """
    import re

    fields = [f for _, f, _, _ in parts if f is not None]
    skeleton = "".join(lit + ("\x00" if f is not None else "") for lit, f, _, _ in parts)
    state = "plain"  # plain | single | double | comment | heredoc
    pending: list[tuple[str, bool]] = []  # here-documents opened on this line
    body: tuple[str, bool] | None = None
    line_start = 0
    k = 0  # index of the next field
    i = 0
    n = len(skeleton)

    def refuse(why: str) -> NoReturn:
        raise ValueError(f"cs.shell: placeholder {{{fields[k]}}} in {template!r} {why}")

    while i < n:
        c = skeleton[i]
        if c == "\x00":
            if state in ("single", "double"):
                q = "'...'" if state == "single" else '"..."'
                refuse(
                    f"is inside {q} quotes, where its quoting does not apply; values are "
                    "quoted for you, so remove the quotes around it"
                )
            if state == "heredoc":
                refuse(
                    "is inside a here-document, where quoting does not apply; pass the "
                    'value with env={"NAME": ...} and write "$NAME" instead'
                )
            if i > 0 and skeleton[i - 1] == "$" and state == "plain":
                refuse(
                    "follows '$', which would change its quoting; for a shell variable "
                    "write ${{name}}, or put a space or quotes between"
                )
            k += 1
            i += 1
            continue
        if state == "heredoc":
            if c == "\n":
                assert body is not None
                line = skeleton[line_start:i]
                if (line.lstrip("\t") if body[1] else line) == body[0]:
                    body = pending.pop(0) if pending else None
                    state = "heredoc" if body else "plain"
                line_start = i + 1
            i += 1
            continue
        if state == "comment":
            if c == "\n":
                state = "plain"
                i -= 1  # let plain handle the newline (here-documents start there)
            i += 1
            continue
        if state == "single":
            if c == "'":
                state = "plain"
            i += 1
            continue
        if state == "double":
            if c == "\\":
                if i + 1 < n and skeleton[i + 1] == "\x00":
                    i += 1
                    continue
                i += 2
                continue
            if c == '"':
                state = "plain"
            i += 1
            continue
        # plain
        if c == "\\":
            if i + 1 < n and skeleton[i + 1] == "\x00":
                refuse("follows a backslash, which would unquote its value; remove the \\")
            i += 2
            continue
        if c == "'":
            state = "single"
        elif c == '"':
            state = "double"
        elif c == "#" and (i == 0 or skeleton[i - 1] in _WORD_START):
            state = "comment"
        elif c == "<" and skeleton.startswith("<<", i) and not skeleton.startswith("<<<", i):
            m = re.compile(_HEREDOC).match(skeleton, i)
            if m is not None:
                # `<<\EOF` quotes the delimiter like `<<'EOF'`; the word is EOF.
                pending.append((m.group(3).replace("\\", ""), m.group(1) == "-"))
                i = m.end()
                continue
        elif c == "\n":
            line_start = i + 1
            if pending:
                body = pending.pop(0)
                state = "heredoc"
        i += 1


class _Spec:
    """A checked command, ready to run either way."""

    __slots__ = ("argv", "check", "cmd", "cwd", "display", "env", "timeout")

    def __init__(
        self,
        argv: list[str],
        cmd: str | list[str],
        display: str,
        *,
        check: bool,
        cwd: str | None,
        env: dict[str, str] | None,
        timeout: float | None,
    ) -> None:
        self.argv = argv
        self.cmd = cmd
        self.display = display
        self.check = check
        self.cwd = cwd
        self.env = env
        self.timeout = timeout

    @classmethod
    def build(
        cls,
        cmd: str | Sequence[StrPath],
        *,
        check: bool,
        cwd: StrPath | None,
        env: Mapping[str, str] | None,
        timeout: float | str | None,
        values: Mapping[str, object],
    ) -> _Spec:
        import shlex

        shown: str | list[str]
        if isinstance(cmd, str):
            filled = _fill(cmd, values)
            if not filled.strip():
                raise ValueError("cs.shell: the command is empty")
            argv, shown, display = ["/bin/sh", "-c", filled], filled, filled
        elif isinstance(cmd, (list, tuple)):
            if values:
                raise TypeError(
                    f"cs.shell: {', '.join(n + '=' for n in values)} given with a list "
                    "command; a list is run as argv without a shell, so put the values in "
                    "the list itself"
                )
            if not cmd:
                raise ValueError("cs.shell: the command list is empty; give the program first")
            words: list[str] = []
            for index, word in enumerate(cmd):
                if isinstance(word, os.PathLike):
                    word = os.fspath(word)
                if not isinstance(word, str):
                    raise TypeError(
                        f"cs.shell: item {index} of the command list is a "
                        f"{type(word).__name__}; every item must be a str or a path "
                        "(convert it with str())"
                    )
                words.append(word)
            argv, shown, display = words, list(words), shlex.join(words)
        else:
            raise TypeError(
                "cs.shell: the command is a string (run with sh -c) or a list of argv "
                f"words (run without a shell), found {type(cmd).__name__}"
            )
        return cls(
            argv,
            shown,
            display,
            check=bool(check),
            cwd=_check_cwd(cwd),
            env=_check_env(env),
            timeout=_parse_timeout(timeout),
        )

    # -- running ---------------------------------------------------------------------

    def _start_failed(self, e: OSError) -> NoReturn:
        code = 127 if isinstance(e, FileNotFoundError) else 126
        what = "not found" if code == 127 else "cannot be run"
        raise ShellError(
            f"cs.shell: {self.argv[0]!r} {what} ({e.strerror}): {self.display}",
            cmd=self.cmd,
            returncode=code,
        ) from e

    def _finish(
        self, returncode: int, stdout: _Sink, stderr: _Sink, timed_out: bool
    ) -> ShellResult:
        import signal

        out = stdout.text()
        if timed_out:
            raise ShellError(
                f"cs.shell: command timed out after {self.timeout:g}s and its process group "
                f"was killed: {self.display}{_tail_block(stderr.tail())}",
                cmd=self.cmd,
                returncode=returncode,
                stdout=out,
                stderr_tail=stderr.tail(),
                timed_out=True,
            )
        if returncode != 0 and self.check:
            if returncode < 0:
                try:
                    how = f"was killed by {signal.Signals(-returncode).name}"
                except ValueError:
                    how = f"was killed by signal {-returncode}"
                how += f" (exit code {returncode})"
            else:
                how = f"failed with exit code {returncode}"
            raise ShellError(
                f"cs.shell: command {how}: {self.display}{_tail_block(stderr.tail())}",
                cmd=self.cmd,
                returncode=returncode,
                stdout=out,
                stderr_tail=stderr.tail(),
            )
        return ShellResult(out, returncode=returncode, cmd=self.cmd)

    def run_sync(self) -> ShellResult:
        import signal
        import subprocess
        import threading
        import time

        stdout, stderr = _Sink(sys.stdout, keep=True), _Sink(sys.stderr, keep=False)
        try:
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        except OSError as e:
            self._start_failed(e)
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            threading.Thread(target=_pump, args=(proc.stdout, stdout), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, stderr), daemon=True),
        ]
        for reader in readers:
            reader.start()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        timed_out = False
        try:
            try:
                proc.wait(timeout=_left(deadline))
            except subprocess.TimeoutExpired:
                timed_out = True
                _stop_group_sync(proc)
            for reader in readers:
                # After the exit, wait for the pipes to close (a background child may
                # still write); a timeout also covers that wait.
                reader.join(_left(deadline) if not timed_out else KILL_GRACE)
                if reader.is_alive() and not timed_out:
                    timed_out = True
                    _stop_group_sync(proc)
                    reader.join(KILL_GRACE)
        except BaseException:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        for sink in (stdout, stderr):
            sink.close()
        return self._finish(proc.returncode, stdout, stderr, timed_out)

    async def run_async(self) -> ShellResult:
        import asyncio
        import contextlib
        import signal
        import subprocess

        stdout, stderr = _Sink(sys.stdout, keep=True), _Sink(sys.stderr, keep=False)
        # Shielded: a cancellation that lands while the child is being started must
        # still find the child, to stop it.
        starting = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        )
        try:
            proc = await asyncio.shield(starting)
        except OSError as e:
            self._start_failed(e)
        except BaseException:
            with contextlib.suppress(BaseException):
                started = await starting
                _signal_group(started.pid, signal.SIGKILL)
                await _settle(started, None)
            raise

        async def finish(p: asyncio.subprocess.Process) -> int:
            assert p.stdout is not None and p.stderr is not None
            await asyncio.gather(_apump(p.stdout, stdout), _apump(p.stderr, stderr))
            return await p.wait()

        done = asyncio.ensure_future(finish(proc))
        timed_out = False
        try:
            try:
                returncode = await asyncio.wait_for(asyncio.shield(done), self.timeout)
            except asyncio.TimeoutError:
                timed_out = True
                await _stop_group_async(proc)
                try:
                    returncode = await asyncio.wait_for(done, KILL_GRACE)
                except asyncio.TimeoutError:
                    # Something outside the group (its own setsid) holds the pipes.
                    returncode = await proc.wait()
        except BaseException:
            # Cancelled (the task is being stopped): take the command down with it.
            _signal_group(proc.pid, signal.SIGKILL)
            await _settle(proc, done)
            raise
        for sink in (stdout, stderr):
            sink.close()
        return self._finish(returncode, stdout, stderr, timed_out)


async def _settle(proc: asyncio.subprocess.Process, done: asyncio.Future[int] | None) -> None:
    """After a kill on the way out: reap the child and read its pipes to the end, so no
    transport is left open for the event loop's shutdown. `done` is the task already
    reading them, if there is one. Bounded by `KILL_GRACE` (a process outside the group
    may hold the pipes), and never raises over the error being propagated."""
    import asyncio
    import contextlib

    waiter: Awaitable[object] = done if done is not None else proc.communicate()
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(waiter, KILL_GRACE)


def _tail_block(tail: str) -> str:
    if not tail:
        return "\n(no stderr output)"
    return f"\nstderr (last {TAIL_LINES} lines):\n{tail}"


def _left(deadline: float | None) -> float | None:
    import time

    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    import contextlib

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop_group_sync(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command's process group, SIGKILL after `KILL_GRACE`."""
    import contextlib
    import signal
    import subprocess

    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


async def _stop_group_async(proc: asyncio.subprocess.Process) -> None:
    import asyncio
    import contextlib
    import signal

    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(proc.wait(), KILL_GRACE)
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


class _Sink:
    """One output stream of the child: echoed line by line, and kept (all or the tail)."""

    def __init__(self, echo: TextIO | None, *, keep: bool) -> None:
        import codecs
        import collections

        self._echo = echo
        self._keep = keep
        self._chunks: list[bytes] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def feed(self, data: bytes) -> None:
        if self._keep:
            self._chunks.append(data)
        text = self._partial + self._decoder.decode(data)
        cut = text.rfind("\n") + 1
        if cut == 0 and len(text) < _CHUNK:
            self._partial = text
            return
        if cut == 0:
            cut = len(text)  # a very long line: pass it on in pieces
        self._partial = text[cut:]
        self._emit(text[:cut])

    def close(self) -> None:
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        if rest:
            self._emit(rest if rest.endswith("\n") else rest + "\n")

    def _emit(self, text: str) -> None:
        if not self._keep:
            self._tail.extend(line[:2000] for line in text.splitlines())
        if self._echo is not None:
            try:
                self._echo.write(text)
                self._echo.flush()
            except (OSError, ValueError):
                self._echo = None  # the log is gone; keep running the command

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")

    def tail(self) -> str:
        return "\n".join(self._tail)


def _pump(pipe: IO[bytes], sink: _Sink) -> None:
    fd = pipe.fileno()
    try:
        while data := os.read(fd, _CHUNK):
            sink.feed(data)
    finally:
        pipe.close()


async def _apump(reader: asyncio.StreamReader, sink: _Sink) -> None:
    while data := await reader.read(_CHUNK):
        sink.feed(data)
