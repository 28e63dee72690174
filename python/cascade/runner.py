"""`python -m cascade.runner`: runs one task of a run (the command of every Python job).

The job's `CSPY_TASK` names the function (`entry`) and says where each argument comes
from (`args`); upstream values arrive as JSON text in the `CSPY_ARG_n` variables. The
runner checks them against the function's annotations, calls it (awaiting a coroutine),
and writes the return value as JSON to the file named by `$CASCADE_OUTPUT` as the output
`result`. Standard output is only log, so a `print` never becomes the result.

It runs once per task process, so it imports only what the task needs: `asyncio` only for
an async task, `traceback` only when the task fails.
"""

from __future__ import annotations

import json
import os
import sys

from ._graph import TASK_VAR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}

# Files already imported by `load_path`, by absolute path: a warm runner
# (`cascade._forkserver`) imports the pipeline's file once and every task forked from it
# finds the module here instead of executing the file again.
_LOADED: dict[str, ModuleType] = {}


class TaskError(Exception):
    """The task cannot be started as its document says (exit 1, message on stderr)."""


def load_path(path: str) -> ModuleType:
    """Imports the Python file `path` under a module name that is not `__main__` (so its
    `if __name__ == "__main__":` block does not run), with the file's folder first on
    `sys.path` as when the file is run as a script."""
    import importlib.util

    absolute = os.path.abspath(path)
    if absolute in _LOADED:
        return _LOADED[absolute]
    if not os.path.isfile(absolute):
        raise TaskError(f"{path}: no such file (paths are relative to {os.getcwd()})")
    folder = os.path.dirname(absolute)
    if not sys.path or sys.path[0] != folder:
        sys.path.insert(0, folder)
    stem = os.path.splitext(os.path.basename(absolute))[0]
    name = (
        stem
        if stem.isidentifier() and stem not in sys.modules
        else f"_cascade_file_{abs(hash(absolute))}"
    )
    spec = importlib.util.spec_from_file_location(name, absolute)
    if spec is None or spec.loader is None:
        raise TaskError(f"{path}: cannot be imported as Python (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    module.__cascade_path__ = absolute  # type: ignore[attr-defined]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    _LOADED[absolute] = module
    return module


def load_module(module_ref: str, path: str | None = None) -> ModuleType:
    """The module part of an entry imported: a `.py` file by path, else a module by name
    (with `path`, when the task description gives one, first on `sys.path`)."""
    if module_ref.endswith(".py"):
        return load_path(module_ref)
    if path is not None:
        folder = os.path.abspath(path)
        if not sys.path or sys.path[0] != folder:
            sys.path.insert(0, folder)
    __import__(module_ref)
    return sys.modules[module_ref]


def resolve(entry: str, path: str | None = None) -> tuple[Any, str]:
    """The function an entry names (`path/file.py:qualname` or `package.module:qualname`)
    and the task's name (`name=` of `@cs.task`, else the function's)."""
    module_ref, sep, qualname = entry.rpartition(":")
    if not sep or not module_ref or not qualname:
        raise TaskError(
            f"entry {entry!r} must be 'path/file.py:function' or 'package.module:function'"
        )
    obj: Any = load_module(module_ref, path)
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TaskError(
                f"{module_ref} has no {qualname!r} (from the entry {entry!r})"
            ) from None
    fn = getattr(obj, "fn", obj)
    if not callable(fn):
        raise TaskError(f"{entry} is a {type(fn).__name__}, not a function")
    name = getattr(obj, "name", None) or getattr(fn, "__name__", None)
    return fn, name if isinstance(name, str) else entry


def _decode(param: str, arg: dict[str, Any]) -> Any:
    kind = arg.get("kind")
    if kind == "const":
        return arg.get("value")
    name = arg.get("env", "")
    text = os.environ.get(name)
    if text is None:
        raise TaskError(f"argument '{param}': {name} is not set (the job's env must bind it)")
    if kind == "param":
        try:
            return json.loads(text)
        except ValueError:
            return text
    if kind == "fanin" and not text.strip():
        # A map over an empty list: the local engine gives `null`, Argo may leave the
        # aggregate of a task with no children empty.
        return []
    try:
        value = json.loads(text)
    except ValueError as e:
        raise TaskError(f"argument '{param}': {name} is not JSON ({e}): {text[:200]!r}") from None
    if kind == "value":
        return value
    if kind == "fanin":
        if value is None:
            return []
        if not isinstance(value, list):
            raise TaskError(
                f"argument '{param}': expected the list of a map's results, found {type(value).__name__}"
            )
        return [None if v is None else json.loads(v) if isinstance(v, str) else v for v in value]
    if kind == "item":
        key = arg.get("key")
        if key is None:
            return value
        if not isinstance(value, dict) or key not in value:
            raise TaskError(f"argument '{param}': the map item {text[:200]!r} has no field {key!r}")
        return value[key]
    raise TaskError(
        f"argument '{param}': unknown kind {kind!r} (expected value, fanin, item, param or const)"
    )


def _type_name(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")


def _found(value: Any) -> str:
    name = "None" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)
    text = json.dumps(value)
    return f"{name} ({text if len(text) <= 60 else text[:57] + '...'})"


def _union_args(annotation: Any) -> tuple[Any, ...] | None:
    import types

    if isinstance(annotation, types.UnionType):
        return annotation.__args__
    typing = sys.modules.get("typing")
    if typing is not None and getattr(annotation, "__origin__", None) is typing.Union:
        args: tuple[Any, ...] = annotation.__args__
        return args
    return None


_UNCHECKED = object()


def _coerce(value: Any, annotation: Any) -> Any:
    """`value` as `annotation` takes it (int for float, list for tuple), or `_UNCHECKED`
    when it does not fit. Annotations the runner does not know are not checked."""
    if annotation is None or annotation is type(None):
        return value if value is None else _UNCHECKED
    union = _union_args(annotation)
    if union is not None:
        for option in union:
            out = _coerce(value, option)
            if out is not _UNCHECKED:
                return out
        return _UNCHECKED
    origin = getattr(annotation, "__origin__", None)
    args: tuple[Any, ...] = getattr(annotation, "__args__", ()) or ()
    kind = origin if isinstance(origin, type) else annotation
    if kind is bool:
        return value if isinstance(value, bool) else _UNCHECKED
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _UNCHECKED
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _UNCHECKED
    if kind is str:
        return value if isinstance(value, str) else _UNCHECKED
    if kind in (list, tuple, set, frozenset):
        if not isinstance(value, list):
            return _UNCHECKED
        items = value
        if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                return _UNCHECKED
            items = [_coerce(v, a) for v, a in zip(value, args, strict=True)]
        elif args:
            items = [_coerce(v, args[0]) for v in value]
        if any(v is _UNCHECKED for v in items):
            return _UNCHECKED
        return items if kind is list else kind(items)
    if kind is dict:
        if not isinstance(value, dict):
            return _UNCHECKED
        if len(args) == 2:
            out = {k: _coerce(v, args[1]) for k, v in value.items()}
            return _UNCHECKED if any(v is _UNCHECKED for v in out.values()) else out
        return value
    return value


def _annotations(fn: Any) -> dict[str, Any]:
    raw: dict[str, Any] = dict(getattr(fn, "__annotations__", {}) or {})
    out: dict[str, Any] = {}
    for name, annotation in raw.items():
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, getattr(fn, "__globals__", {}))
            except Exception:
                continue
        out[name] = annotation
    return out


def check(fn: Any, kwargs: dict[str, Any], task: str) -> dict[str, Any]:
    """The arguments converted to what the annotations say, or TaskError naming every
    argument that does not fit: the parameter, the expected and the found type."""
    annotations = _annotations(fn)
    problems: list[str] = []
    out: dict[str, Any] = {}
    for param, value in kwargs.items():
        if param not in annotations:
            out[param] = value
            continue
        converted = _coerce(value, annotations[param])
        if converted is _UNCHECKED:
            expected = _type_name(annotations[param])
            problems.append(
                f"argument '{param}' of task '{task}' expects {expected}, found {_found(value)}"
            )
        out[param] = converted
    if problems:
        raise TaskError("; ".join(problems))
    return out


def _print_exception(e: BaseException) -> None:
    """The traceback on stderr, without the frames of this runner and of asyncio: the
    user's frames are what matter."""
    import traceback

    # The runner's frames, and the warm runner's that forked this process.
    here = os.path.abspath(__file__)
    internal = [here, os.path.join(os.path.dirname(here), "_forkserver.py")]
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and asyncio.__file__:
        internal.append(os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep)
    summary = traceback.TracebackException.from_exception(e)
    for exc in _chain(summary):
        frames = [
            f
            for f in exc.stack
            if not any(os.path.abspath(f.filename).startswith(i) for i in internal)
        ]
        exc.stack = traceback.StackSummary.from_list(frames)
    sys.stderr.write("".join(summary.format()))


def _chain(summary: Any) -> list[Any]:
    out: list[Any] = []
    todo = [summary]
    while todo:
        exc = todo.pop()
        if exc is None or any(exc is seen for seen in out):
            continue
        out.append(exc)
        todo += [exc.__cause__, exc.__context__]
    return out


def _write_result(text: str) -> None:
    path = os.environ.get("CASCADE_OUTPUT")
    if not path:
        # Started by hand, outside a run: show the result.
        sys.stdout.write(text + "\n")
        return
    delimiter = "CASCADE_EOF_" + os.urandom(8).hex()
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"result<<{delimiter}\n{text}\n{delimiter}\n")


def run() -> int:
    """Runs the task `CSPY_TASK` describes; the process's exit code."""
    text = os.environ.get(TASK_VAR)
    if not text:
        sys.stderr.write(
            f"error: {TASK_VAR} is not set; this module runs one task of a cascade run "
            "(the jobs `cascade run` starts set it); to call a task by hand, call task.fn(...)\n"
        )
        return 2
    try:
        spec = json.loads(text)
        if isinstance(spec, dict) and "b64" in spec:
            import base64

            spec = json.loads(base64.b64decode(spec["b64"]))
        entry = spec["entry"]
        fn, task = resolve(entry, spec.get("path"))
        kwargs = {param: _decode(param, arg) for param, arg in spec.get("args", {}).items()}
        kwargs = check(fn, kwargs, task)
    except TaskError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    except (ValueError, KeyError, TypeError) as e:
        sys.stderr.write(f"error: {TASK_VAR} is not a task description ({type(e).__name__}: {e})\n")
        return 1
    # Each line reaches the task log as it is printed, not when the process exits.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
    try:
        result = fn(**kwargs)
        if spec.get("async") or hasattr(result, "__await__"):
            import asyncio

            result = asyncio.run(result)
    except BaseException as e:
        if isinstance(e, SystemExit) and e.code in (0, None):
            sys.stderr.write(
                f"error: task '{task}' called sys.exit() instead of returning a value\n"
            )
            return 1
        sys.stdout.flush()
        _print_exception(e)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    try:
        out = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as e:
        sys.stderr.write(
            f"error: task '{task}' returned a {type(result).__name__}, which is not JSON ({e}); "
            "return str, int, float, bool, None, or lists and dicts of them\n"
        )
        return 1
    sys.stdout.flush()
    _write_result(out)
    return 0


if __name__ == "__main__":
    sys.exit(run())
