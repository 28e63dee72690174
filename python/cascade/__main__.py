"""`python -m cascade render path/file.py:function`: what the `cascade` binary runs to
read a Python pipeline.

Imports the file (not as `__main__`), calls `function()`, lowers the LazyResult it returns
and prints ONE JSON object on stdout: `{"document": {...}, "sources": {"<job id>":
{"file": ..., "line": N}, "": <the def of function>}}`. When the graph cannot be built it
prints `path/file.py:LINE: error: MESSAGE` lines on stderr and exits 1. Whatever the
pipeline's modules print while they load goes to stderr, so stdout stays one document.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

USAGE = "usage: python -m cascade render path/file.py:function\n"


def _package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def _where(e: BaseException, default: tuple[str, int]) -> tuple[str, int]:
    """The innermost frame of the traceback outside the cascade package (the user's line)."""
    from ._lower import relative

    if isinstance(e, SyntaxError) and e.filename:
        return relative(e.filename), e.lineno or 1
    package = _package_dir() + os.sep
    found = default
    tb = e.__traceback__
    while tb is not None:
        file = tb.tb_frame.f_code.co_filename
        if not os.path.abspath(file).startswith(package) and not file.startswith("<"):
            found = (relative(file), tb.tb_lineno)
        tb = tb.tb_next
    return found


def _fail(err: TextIO, file: str, line: int, message: str) -> int:
    for text in message.splitlines() or [""]:
        err.write(f"{file}:{line}: error: {text}\n")
    return 1


def render(target: str, out: TextIO, err: TextIO) -> int:
    """Renders `path/file.py:function`; the exit code."""
    from ._graph import BuildError, LazyResult
    from ._lower import lower, relative
    from .runner import TaskError, load_path

    path, sep, function = target.rpartition(":")
    if not sep or not path or not function:
        err.write(f"error: expected path/file.py:function, found {target!r}\n{USAGE}")
        return 2
    file = relative(path)
    if not os.path.isfile(path):
        return _fail(err, file, 1, f"no such file (looked in {os.getcwd()})")
    stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        try:
            module = load_path(path)
        except TaskError as e:
            return _fail(err, file, 1, str(e))
        except BaseException as e:
            where = _where(e, (file, 1))
            return _fail(err, *where, f"cannot import {file}: {type(e).__name__}: {e}")
        fn = getattr(module, function, None)
        if not callable(fn):
            names = sorted(
                n
                for n, v in vars(module).items()
                if callable(v)
                and not n.startswith("_")
                and getattr(v, "__module__", None) == module.__name__
            )
            listing = ", ".join(names) if names else "none"
            return _fail(
                err, file, 1, f"{file} has no function {function!r} (its functions: {listing})"
            )
        code = getattr(fn, "__code__", None)
        def_line = code.co_firstlineno if code is not None else 1
        try:
            target_value = fn()
        except BuildError as e:
            where = (relative(e.file), e.line or 1) if e.file else _where(e, (file, def_line))
            return _fail(err, *where, e.message)
        except BaseException as e:
            where = _where(e, (file, def_line))
            return _fail(err, *where, f"{type(e).__name__}: {e}")
        values = target_value if isinstance(target_value, (list, tuple)) else [target_value]
        if not values or not all(isinstance(v, LazyResult) for v in values):
            found = type(target_value).__name__
            return _fail(
                err,
                file,
                def_line,
                f"{function}() must return the LazyResult of the task that ends the pipeline, found {found}",
            )
        try:
            lowered = lower(target_value, name=function)
        except BuildError as e:
            where = (relative(e.file), e.line or 1) if e.file else (file, def_line)
            return _fail(err, *where, e.message)
    finally:
        sys.stdout = stdout
    sources: dict[str, Any] = {"": {"file": file, "line": def_line}, **lowered.sources}
    out.write(json.dumps({"document": lowered.document, "sources": sources}) + "\n")
    out.flush()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "render":
        return render(argv[1], sys.stdout, sys.stderr)
    if argv in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return 0
    sys.stderr.write(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
