"""Placeholder: replaced by the py-shell branch's `_env.py` at merge.

`Env("NAME")` reads a declared secret or variable at run time; `declared_names(fn)` lists
the literal names a task's body reads that way.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Env(str):
    """The value of the environment variable `name` (a declared secret or variable)."""

    def __new__(cls, name: str) -> Env:
        value = os.environ.get(name)
        if value is None:
            raise KeyError(
                f"{name} is not set; declare it with secrets=[{name!r}] or cs.Env({name!r}) in the task"
            )
        return super().__new__(cls, value)


def declared_names(fn: Callable[..., Any]) -> list[str]:
    """The literal names used as `cs.Env("NAME")` / `Env("NAME")` in `fn`'s source."""
    import ast
    import inspect
    import textwrap

    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return []
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or len(node.args) != 1:
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        arg = node.args[0]
        if called == "Env" and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            names.add(arg.value)
    return sorted(names)
