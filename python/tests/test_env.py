"""cs.Env at run time, and declared_names: the literal names a task body reads."""

from __future__ import annotations

import functools
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cascade import _env as cs
from cascade._env import Env, MissingEnv, UndeclarableEnv, declared_names

F = TypeVar("F", bound=Callable[..., Any])


def passthrough(fn: F) -> F:
    """A decorator like @cs.task's: returns the function itself."""
    return fn


def wrapping(fn: F) -> F:
    """A decorator that wraps (functools.wraps sets __wrapped__)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def with_option(_: str) -> Callable[[F], F]:
    return passthrough


# ---------------------------------------------------------------------------------------
# Env


def test_env_returns_the_value_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_ENV_TEST", "first")
    assert Env("CS_ENV_TEST") == "first"
    monkeypatch.setenv("CS_ENV_TEST", "")
    assert Env("CS_ENV_TEST", "default") == ""  # set but empty is a value
    monkeypatch.delenv("CS_ENV_TEST")
    assert cs.Env("CS_ENV_TEST", default="fallback") == "fallback"


def test_a_missing_name_is_a_key_error_saying_how_to_declare_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CS_ENV_ABSENT", raising=False)
    with pytest.raises(KeyError) as info:
        Env("CS_ENV_ABSENT")
    assert isinstance(info.value, MissingEnv)
    assert info.value.name == "CS_ENV_ABSENT"
    message = str(info.value)
    assert message.startswith("cs.Env('CS_ENV_ABSENT'): CS_ENV_ABSENT is not set")
    assert "secrets=['CS_ENV_ABSENT']" in message
    assert 'cs.Env("CS_ENV_ABSENT") with the name written literally' in message


def test_bad_names_and_defaults_are_errors() -> None:
    with pytest.raises(ValueError, match="'1ABC' is not an environment variable name"):
        Env("1ABC")
    with pytest.raises(ValueError, match="not an environment variable name"):
        Env("A-B")
    with pytest.raises(TypeError, match="default= takes a str, found int"):
        Env("HOME", 3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# declared_names


def sync_task() -> str:
    return cs.Env("B_TOKEN") + Env("A_TOKEN")


async def async_task() -> str:
    return Env("ASYNC_TOKEN", default="x")


@passthrough
@with_option("ignored")
def decorated_task() -> None:
    Env("DECORATED")


@wrapping
async def wrapped_async_task() -> None:
    Env(name="WRAPPED")


def many_names() -> None:
    for _ in range(2):
        Env("ZED")
        cs.Env("ALPHA")
        cascade.Env("MIDDLE")  # type: ignore[name-defined]  # noqa: F821 - only parsed
        Env("ALPHA")

    def nested() -> str:
        return Env("NESTED")

    _ = lambda: Env("IN_LAMBDA")  # noqa: E731


def no_names() -> str:
    return "Env('NOT_A_CALL') in a string"


@with_option(Env("IN_DECORATOR", "x"))
def decorator_arguments_are_not_the_body(
    token: str = Env("IN_DEFAULT", "x"),
) -> None:
    pass


@pytest.mark.parametrize(
    ("fn", "names"),
    [
        (sync_task, ["A_TOKEN", "B_TOKEN"]),
        (async_task, ["ASYNC_TOKEN"]),
        (decorated_task, ["DECORATED"]),
        (wrapped_async_task, ["WRAPPED"]),
        (many_names, ["ALPHA", "IN_LAMBDA", "MIDDLE", "NESTED", "ZED"]),
        (no_names, []),
        (decorator_arguments_are_not_the_body, []),
    ],
)
def test_declared_names_are_the_sorted_literal_names_of_the_body(
    fn: Callable[..., object], names: list[str]
) -> None:
    assert declared_names(fn) == names


def test_nested_functions_and_methods_are_dedented() -> None:
    class Holder:
        @staticmethod
        def method() -> str:
            return Env("IN_METHOD")

    def inner() -> str:
        text = """
a string less indented than the def
"""
        return text + Env("INNER")

    assert declared_names(Holder.method) == ["IN_METHOD"]
    assert declared_names(inner) == ["INNER"]


def test_a_name_that_is_not_a_literal_is_an_error_at_its_file_and_line() -> None:
    def dynamic(name: str) -> str:
        return Env("FINE") + cs.Env(name)  # the non-literal call

    line = next(
        i
        for i, text in enumerate(Path(__file__).read_text().splitlines(), 1)
        if text.endswith("# the non-literal call")
    )
    with pytest.raises(UndeclarableEnv) as info:
        declared_names(dynamic)
    assert isinstance(info.value, ValueError)
    assert (info.value.file, info.value.line) == (__file__, line)
    assert str(info.value).startswith(
        f"{__file__}:{line}: cs.Env(name) needs the name as a string literal"
    )
    assert "secrets=[...]" in str(info.value)

    def formatted() -> str:
        prefix = "X"
        return Env(f"{prefix}_TOKEN")

    with pytest.raises(UndeclarableEnv, match=r"Env\(f'\{prefix\}_TOKEN'\) needs the name"):
        declared_names(formatted)

    def starred(args: list[str]) -> str:
        return Env(*args)

    with pytest.raises(UndeclarableEnv, match="needs the name"):
        declared_names(starred)

    def invalid() -> str:
        return Env("NOT VALID")

    with pytest.raises(UndeclarableEnv, match="'NOT VALID' is not an environment variable"):
        declared_names(invalid)


def test_functions_without_source_declare_nothing() -> None:
    namespace: dict[str, Any] = {"Env": Env}
    exec("def typed_in():\n    return Env('FROM_EXEC')\n", namespace)
    assert declared_names(namespace["typed_in"]) == []
    assert declared_names(len) == []


def test_an_unrelated_env_or_cs_in_the_functions_globals_is_ignored(tmp_path: Path) -> None:
    module = tmp_path / "other_env.py"
    module.write_text(
        "import types\n"
        "from cascade._env import Env as read_secret\n"
        "cs = types.SimpleNamespace(Env=lambda n: n)\n"
        "class Env:\n"
        "    def __init__(self, name): pass\n"
        "def task():\n"
        "    return Env('NOT_OURS'), cs.Env('NOT_OURS_EITHER'), read_secret('ALIASED')\n"
    )
    spec = importlib.util.spec_from_file_location("other_env", module)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules["other_env"] = loaded
    try:
        spec.loader.exec_module(loaded)
        assert declared_names(loaded.task) == ["ALIASED"]
    finally:
        del sys.modules["other_env"]


def test_the_line_numbers_are_those_of_the_file() -> None:
    def late() -> None:
        x = 1

        Env((x and "A") or "B")  # not a literal either

    first = inspect.getsourcelines(late)[1]
    with pytest.raises(UndeclarableEnv) as info:
        declared_names(late)
    assert info.value.line == first + 3
