"""`cs.Env`: a secret or variable read at run time, declared by being named in the source.

A task only receives the secrets and variables it declares, so the engine (locally) and
the Argo renderer (as `secretKeyRef`s) need the names before the task runs. A task
declares a name with `secrets=[...]` or by reading it as `cs.Env("NAME")` in its body;
`declared_names(fn)` finds the second kind by parsing the function's source with `ast`,
which is why the name must be a string literal there.
"""

from __future__ import annotations

import os

# A task process imports this package: ast and inspect are imported by declared_names
# (at build time), typing only by the type checker.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["Env", "MissingEnv", "UndeclarableEnv", "declared_names"]

_MODULE_NAMES = ("cs", "cascade")


def _is_name(text: object) -> bool:
    """An environment variable name: ASCII letters, digits and _, not starting with a digit."""
    return isinstance(text, str) and text.isascii() and text.isidentifier()


class MissingEnv(KeyError):
    """`cs.Env("NAME")` found no `NAME` in the environment and was given no default."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        n = self.name
        return (
            f"cs.Env({n!r}): {n} is not set in this task's environment. A task receives "
            f"only the names it declares: list it in @cs.task(secrets=[{n!r}]) or read it "
            f'as cs.Env("{n}") with the name written literally in the task body, and set '
            f"it where the run starts (or give a default: cs.Env({n!r}, default=...))"
        )


class UndeclarableEnv(ValueError):
    """A `cs.Env(...)` in a task body whose name is not a string literal.

    `file` and `line` locate the call, `detail` says what is wrong; `str()` is
    `file:line: detail`.
    """

    def __init__(self, file: str, line: int, detail: str) -> None:
        super().__init__(f"{file}:{line}: {detail}")
        self.file = file
        self.line = line
        self.detail = detail


def Env(name: str, default: str | None = None) -> str:
    """The value of the environment variable `name`, read now (at run time).

    Returns `default` when the variable is not set and a default is given; otherwise
    raises `MissingEnv` (a `KeyError`) saying how to declare the name. Inside a task
    only declared names are present: `secrets=[...]` of `@cs.task` and every
    `cs.Env("NAME")` written with a literal name in the task's body. Secrets are masked
    in the task log by the engine; do not print them anyway.
    """
    if not _is_name(name):
        raise ValueError(
            f"cs.Env: {name!r} is not an environment variable name; expected letters, "
            "digits and _ (not starting with a digit), such as 'PYPI_TOKEN'"
        )
    if default is not None and not isinstance(default, str):
        raise TypeError(f"cs.Env({name!r}): default= takes a str, found {type(default).__name__}")
    value = os.environ.get(name)
    if value is not None:
        return value
    if default is not None:
        return default
    raise MissingEnv(name)


def declared_names(fn: Callable[..., object]) -> list[str]:
    """The names `fn`'s body reads as `Env("NAME")`, `cs.Env("NAME")` or `cascade.Env("NAME")`.

    Sorted and unique. The source is read with `inspect` (decorators, `async def` and
    methods or nested functions are fine; a `functools.wraps` wrapper is unwrapped) and
    parsed with `ast`; calls in the body and in functions nested in it count, decorators
    and argument defaults do not. Another module or class called `Env`/`cs` in the
    function's globals is not `cs.Env` and is ignored. Returns `[]` when the source is
    not available (built-ins, code typed into a REPL). Raises `UndeclarableEnv`, naming
    the file and line, for a call whose name is not a string literal (`cs.Env(name)`):
    the engine must know every name before the task runs.
    """
    import inspect

    target = inspect.unwrap(fn)
    try:
        lines, first = inspect.getsourcelines(target)
        file = inspect.getsourcefile(target) or inspect.getfile(target)
    except (OSError, TypeError):
        return []
    parsed = _parse("".join(lines))
    if parsed is None:
        return []
    tree, offset = parsed
    scope = getattr(target, "__globals__", {})
    names: set[str] = set()
    for call in _env_calls(tree, scope):
        line = first + call.lineno - 1 - offset
        names.add(_literal_name(call, file, line))
    return sorted(names)


def _parse(source: str) -> tuple[list[ast.stmt], int] | None:
    """The body of the function in `source`, and how many lines were added before it."""
    import ast
    import textwrap

    try:
        module, offset = ast.parse(textwrap.dedent(source)), 0
    except SyntaxError:
        # A multi-line string in the body less indented than the `def` defeats dedent;
        # the tokenizer ignores indentation inside strings, so nest it in a block instead.
        try:
            module, offset = ast.parse("if 1:\n" + source), 1
        except SyntaxError:
            return None
        first_if = module.body[0]
        assert isinstance(first_if, ast.If)
        module = ast.Module(body=first_if.body, type_ignores=[])
    if module.body and isinstance(module.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        return module.body[0].body, offset
    return module.body, offset  # a lambda, or something that is not one def


def _env_calls(body: list[ast.stmt], scope: Mapping[str, object]) -> Iterator[ast.Call]:
    import ast

    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call) and _is_env(node.func, scope):
                yield node


def _is_env(func: ast.expr, scope: Mapping[str, object]) -> bool:
    import ast
    import types

    if isinstance(func, ast.Name):
        if func.id in scope:
            return scope[func.id] is Env
        return func.id == "Env"
    if isinstance(func, ast.Attribute) and func.attr == "Env" and isinstance(func.value, ast.Name):
        base = func.value.id
        if base in scope:
            module = scope[base]
            return isinstance(module, types.ModuleType) and getattr(module, "Env", None) is Env
        return base in _MODULE_NAMES
    return False


def _literal_name(call: ast.Call, file: str, line: int) -> str:
    import ast

    shown = ast.unparse(call)
    arg: ast.expr | None = call.args[0] if call.args else None
    if arg is None:
        arg = next((k.value for k in call.keywords if k.arg == "name"), None)
    starred = any(isinstance(a, ast.Starred) for a in call.args) or any(
        k.arg is None for k in call.keywords
    )
    if arg is None or starred or not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        raise UndeclarableEnv(
            file,
            line,
            f'{shown} needs the name as a string literal, such as cs.Env("PYPI_TOKEN"): '
            "the engine hands a task only the names it declares, and reads them from the "
            "source before the task runs; write the name literally, or list it in "
            "@cs.task(secrets=[...]) and read it with os.environ",
        )
    if not _is_name(arg.value):
        raise UndeclarableEnv(
            file,
            line,
            f"{shown}: {arg.value!r} is not an environment variable name; expected "
            "letters, digits and _ (not starting with a digit)",
        )
    return arg.value
