"""The graph a pipeline function builds: tasks, their calls (`LazyResult`), maps, params.

Calling a task runs nothing: it records the call (the arguments bound against the
function's signature, and the file and line of the call) as a `LazyResult`, a node of the
graph that `cascade._lower` turns into a pipeline document. This module is imported by
every task process (`python -m cascade.runner` imports the pipeline's modules, which
decorate their tasks), so it stays cheap to import: no `inspect`, `dataclasses` or
`asyncio` at module level.
"""

from __future__ import annotations

import re
import sys

from ._duration import seconds

# `typing` costs more to import than the rest of a task process's start together, so
# it is only seen by type checkers; at run time `Generic[...]` is a stand-in and
# `overload` the identity (annotations are strings: `from __future__ import annotations`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import inspect
    from collections.abc import Callable, Coroutine
    from typing import Any, Generic, NoReturn, ParamSpec, TypeVar, overload

    T = TypeVar("T")
    R = TypeVar("R")
    P = ParamSpec("P")
else:
    T = R = P = None

    class Generic:
        """Subscripting a class gives the class itself (`cs.LazyResult[int]` in an
        annotation that Python evaluates)."""

        __slots__ = ()

        def __class_getitem__(cls, params: object) -> type:
            return cls

    def overload(fn: object) -> object:
        return fn


# The variables of a Python job (not `CASCADE_*`: the pipeline parser reserves those names
# and the engine sets `CASCADE_TASK` to the task id).
TASK_VAR = "CSPY_TASK"
ARG_VAR = "CSPY_ARG_"
_HINT = (
    "a LazyResult is a value that exists only when the run happens; pass it to another "
    "task (as an argument, to .map() or to .after()) and use the value inside that task"
)
# A job id and a `workflow_dispatch` input name of the pipeline file.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")
# Code flags of a function (`inspect.CO_*`, without importing inspect).
_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08
_CO_COROUTINE = 0x80


class BuildError(Exception):
    """The pipeline graph cannot be built; `file` and `line` say where (the call or the
    decorator that is wrong), when known."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        super().__init__(f"{file}:{line}: {message}" if file is not None else message)


class _Site:
    """Where something was written: the file, the line and the enclosing function."""

    __slots__ = ("file", "function", "line")

    def __init__(self, file: str, line: int, function: str) -> None:
        self.file = file
        self.line = line
        self.function = function

    def error(self, message: str) -> BuildError:
        return BuildError(message, self.file, self.line)


def _site(depth: int) -> _Site:
    """The caller `depth` frames above the function calling this one."""
    frame = sys._getframe(depth + 1)
    return _Site(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


def _refuse(what: str) -> NoReturn:
    raise TypeError(f"cannot {what} a LazyResult: {_HINT}")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no default>"


MISSING: Any = _Missing()


def _duration(value: object, what: str, site: _Site) -> str:
    """A duration as the pipeline file writes it (`30s`, `10m`, `1h30m`); numbers are seconds."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise site.error(
            f"{what} must be a duration such as '30s' or '10m', or seconds as a number, found {type(value).__name__}"
        )
    if isinstance(value, str):
        if seconds(value) is None:
            raise site.error(
                f"{what} must be a duration such as '500ms', '30s', '10m' or '1h30m', found {value!r}"
            )
        return value
    if value <= 0:
        raise site.error(f"{what} must be more than zero, found {value!r}")
    return f"{value}s" if float(value).is_integer() else f"{round(value * 1000)}ms"


class Retry:
    """How often a failed task is tried again: `limit` more attempts, waiting `backoff`
    (doubling each time, capped at `max_backoff`) between them."""

    __slots__ = ("backoff", "limit", "max_backoff")

    def __init__(
        self,
        limit: int,
        backoff: str | float | None = None,
        max_backoff: str | float | None = None,
    ) -> None:
        site = _site(1)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise site.error(
                f"cs.Retry(limit=...) must be a whole number of retries (0 or more), found {limit!r}"
            )
        self.limit = limit
        self.backoff = (
            None if backoff is None else _duration(backoff, "cs.Retry(backoff=...)", site)
        )
        self.max_backoff = (
            None
            if max_backoff is None
            else _duration(max_backoff, "cs.Retry(max_backoff=...)", site)
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"limit": self.limit}
        if self.backoff is not None:
            out["backoff"] = self.backoff
        if self.max_backoff is not None:
            out["max_backoff"] = self.max_backoff
        return out

    def __repr__(self) -> str:
        return f"Retry(limit={self.limit!r}, backoff={self.backoff!r}, max_backoff={self.max_backoff!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Retry) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash((self.limit, self.backoff, self.max_backoff))


class Param(Generic[T]):
    """A run parameter: `params=` of `cs.run`, `--input name=value` on the command line,
    `spec.arguments` on Argo. Pass it to a task like any value (or to `.map()` when it
    holds a list); the task receives the value given to the run, else `default`."""

    __slots__ = ("default", "name", "site")

    def __init__(self, name: str, default: T = MISSING) -> None:
        site = _site(1)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise site.error(
                f"cs.Param name must be letters, digits, '_' or '-' (starting with a letter or '_'), found {name!r}"
            )
        self.name = name
        self.default = default
        self.site = site

    def __repr__(self) -> str:
        return f"Param({self.name!r}, default={self.default!r})"

    def __bool__(self) -> NoReturn:
        raise TypeError(
            f"cannot use cs.Param({self.name!r}) as a bool: its value exists only when the run happens; pass it to a task"
        )

    def __iter__(self) -> NoReturn:
        raise TypeError(
            f"cannot iterate over cs.Param({self.name!r}): its value exists only when the run happens; map over it with task.map(x=param)"
        )

    def __str__(self) -> NoReturn:
        raise TypeError(
            f"cannot turn cs.Param({self.name!r}) into a string: its value exists only when the run happens; pass it to a task"
        )

    def __format__(self, spec: str) -> NoReturn:
        self.__str__()


class Unmapped(Generic[T]):
    """A `.map()` argument passed whole to every item (see `unmapped`)."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"unmapped({self.value!r})"


def unmapped(value: T) -> Unmapped[T]:
    """Marks a `.map()` argument as the same for every item: `lint.map(path=paths,
    config=cs.unmapped(cfg))`. Without it a list argument is mapped over."""
    return Unmapped(value)


class LazyResult(Generic[T]):
    """The result of a task call, known only when the run happens.

    Pass it to other tasks (an argument, a `.map()` list, an `.after()` dependency);
    `cs.run` returns its value and `cs.render` the document that computes it. A mapped
    call (`task.map(...)`) passed whole to a task gives that task the list of the item
    results, in item order.
    """

    __slots__ = ("_after", "_args", "_mapped", "_seq", "_site", "_task")

    _count = 0

    def __init__(
        self,
        task: Task[..., Any],
        args: dict[str, Any],
        mapped: dict[str, Any] | None,
        site: _Site,
    ) -> None:
        LazyResult._count += 1
        self._seq = LazyResult._count
        self._task = task
        # Parameter name -> LazyResult, Param or a JSON constant, in signature order.
        self._args = args
        # For a `.map()`: parameter name -> a list literal, a LazyResult or a Param.
        self._mapped = mapped
        # (dependency, where .after() was called, build order of that call)
        self._after: list[tuple[LazyResult[Any], _Site, int]] = []
        self._site = site

    @property
    def task(self) -> Task[..., Any]:
        """The task this is a call of."""
        return self._task

    @property
    def is_mapped(self) -> bool:
        """Whether this is a `.map()` (its value is the list of the item results)."""
        return self._mapped is not None

    def after(self, *deps: LazyResult[Any]) -> LazyResult[T]:
        """Runs this task only after `deps` finished (an ordering edge without data).
        Changes this result in place and returns it, so both
        `t = task().after(a)` and `t.after(a)` work."""
        site = _site(1)
        for dep in deps:
            if not isinstance(dep, LazyResult):
                raise site.error(
                    f".after() of task '{self._task.name}' takes LazyResults (task calls), found {type(dep).__name__}"
                )
            if dep is self:
                raise site.error(f"task '{self._task.name}' cannot run after itself")
            LazyResult._count += 1
            self._after.append((dep, site, LazyResult._count))
        return self

    def __repr__(self) -> str:
        kind = "map" if self._mapped is not None else "call"
        return f"<LazyResult of a {kind} of task '{self._task.name}' at {self._site.file}:{self._site.line}>"

    def __bool__(self) -> NoReturn:
        _refuse("use as a bool (if/and/or/not)")

    def __iter__(self) -> NoReturn:
        _refuse("iterate over (for, list(), unpacking)")

    def __contains__(self, item: object) -> NoReturn:
        _refuse("test membership (in) of")

    def __len__(self) -> NoReturn:
        _refuse("take the len() of")

    def __getitem__(self, key: object) -> NoReturn:
        _refuse("index")

    def __str__(self) -> NoReturn:
        _refuse("turn into a string (str(), f-string, print)")

    def __format__(self, spec: str) -> NoReturn:
        _refuse("format (f-string, format())")

    def __await__(self) -> NoReturn:
        _refuse("await")


def _check_const(value: Any, what: str, site: _Site) -> None:
    """A constant argument must be JSON (it travels to the task as JSON) and must not hide
    a LazyResult (only whole arguments are dependencies)."""
    if isinstance(value, LazyResult):
        raise site.error(
            f"{what} holds a LazyResult inside a list or dict; pass each LazyResult as its own "
            "argument, or collect them with a task that returns the list"
        )
    if isinstance(value, (Param, Unmapped)):
        raise site.error(
            f"{what} holds a {type(value).__name__} inside a list or dict; pass it as its own argument"
        )
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise site.error(f"{what} is {value!r}, which JSON cannot hold")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_const(item, what, site)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise site.error(
                    f"{what} is a dict with a {type(key).__name__} key; JSON objects have string keys"
                )
            _check_const(item, what, site)
        return
    raise site.error(
        f"{what} is a {type(value).__name__}, which cannot travel to a task as JSON; "
        "pass str, int, float, bool, None, or lists and dicts of them"
    )


class Task(Generic[P, R]):
    """A function decorated with `@cs.task`. Calling it returns a `LazyResult` (nothing
    runs); `task.fn` is the plain function, for unit tests."""

    def __init__(
        self,
        fn: Callable[P, Any],
        *,
        name: str | None,
        retry: Retry | int | None,
        timeout: str | float | None,
        secrets: list[str] | tuple[str, ...] | None,
        env: dict[str, str] | None,
        runner: str | None,
        image: str | None,
        resources: dict[str, str | int | float] | None,
        site: _Site,
    ) -> None:
        if not callable(fn) or not hasattr(fn, "__code__"):
            raise site.error(
                f"@cs.task decorates a function (def or async def), found {type(fn).__name__}"
            )
        qualname: str = fn.__qualname__
        if fn.__name__ == "<lambda>":
            raise site.error(
                "a lambda cannot be a task: the task process imports its function by name; write a def at module level"
            )
        if "<locals>" in qualname:
            raise site.error(
                f"'{qualname}' is defined inside a function and cannot be a task: the task process "
                "imports its function by name; define it at module level"
            )
        code = fn.__code__
        if code.co_flags & (_CO_VARARGS | _CO_VARKEYWORDS):
            raise site.error(
                f"task '{fn.__name__}' takes *args or **kwargs; a task takes named parameters only"
            )
        if code.co_posonlyargcount:
            raise site.error(
                f"task '{fn.__name__}' has positional-only parameters ('/'); a task's parameters are passed by name"
            )
        task_name = fn.__name__ if name is None else name
        if not isinstance(task_name, str) or not _NAME.fullmatch(task_name):
            raise site.error(
                f"task name must be letters, digits, '_' or '-' (starting with a letter or '_', at most 100), found {task_name!r}"
            )
        if isinstance(retry, int) and not isinstance(retry, bool):
            retry = Retry(retry)
        if retry is not None and not isinstance(retry, Retry):
            raise site.error(
                f"retry= takes cs.Retry(limit=..., backoff=...) or a number of retries, found {type(retry).__name__}"
            )
        self.fn: Callable[P, Any] = fn
        self.name: str = task_name
        self.is_async: bool = bool(code.co_flags & _CO_COROUTINE)
        self.retry: Retry | None = retry
        self.timeout = None if timeout is None else _duration(timeout, "timeout=", site)
        self.secrets: list[str] = _strings(secrets, "secrets=", site)
        self.env: dict[str, str] = _env(env, site)
        self.runner = _opt_str(runner, "runner=", site)
        self.image = _opt_str(image, "image=", site)
        self.resources = _resources(resources, site)
        self.site = site
        self._signature: inspect.Signature | None = None
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<cascade task '{self.name}' ({self.fn.__module__}.{self.fn.__qualname__})>"

    def _bind(self, site: _Site, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        import inspect

        if self._signature is None:
            self._signature = inspect.signature(self.fn)
        unknown = [k for k in kwargs if k not in self._signature.parameters]
        if unknown:
            params = ", ".join(self._signature.parameters) or "none"
            raise site.error(
                f"task '{self.name}' has no parameter '{unknown[0]}' (its parameters: {params})"
            )
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as e:
            params = ", ".join(self._signature.parameters) or "none"
            raise site.error(
                f"cannot call task '{self.name}': {e} (its parameters: {params})"
            ) from None
        return dict(bound.arguments)

    def __call__(self, *args: Any, **kwargs: Any) -> LazyResult[R]:
        # Arguments are Any, not P: a LazyResult stands for the value the parameter takes.
        site = _site(1)
        bound = self._bind(site, args, kwargs)
        for param, value in bound.items():
            what = f"argument '{param}' of task '{self.name}'"
            if isinstance(value, Unmapped):
                raise site.error(
                    f"{what} is cs.unmapped(...), which is only for .map(); pass the value itself"
                )
            if not isinstance(value, (LazyResult, Param)):
                _check_const(value, what, site)
        return LazyResult(self, bound, None, site)

    def map(self, **kwargs: Any) -> LazyResult[list[R]]:
        """One call per item: list arguments are zipped (equal lengths), `cs.unmapped(x)` is
        passed whole to every item. A list is a literal, a `LazyResult` of a list, or a
        `cs.Param` holding one. The result is the list of the item results, in item
        order; mapping over an empty list gives `[]`."""
        site = _site(1)
        mapped: dict[str, Any] = {}
        whole: dict[str, Any] = {}
        for param, value in kwargs.items():
            what = f"argument '{param}' of {self.name}.map()"
            if isinstance(value, Unmapped):
                inner = value.value
                if not isinstance(inner, (LazyResult, Param)):
                    _check_const(inner, what, site)
                whole[param] = inner
            elif isinstance(value, (list, tuple)):
                _check_const(value, what, site)
                mapped[param] = list(value)
            elif isinstance(value, (LazyResult, Param)):
                mapped[param] = value
            else:
                raise site.error(
                    f"{what} must be a list to map over (a literal list, a LazyResult of a list or a cs.Param), "
                    f"found {type(value).__name__}; wrap a value shared by every item in cs.unmapped(...)"
                )
        if not mapped:
            raise site.error(
                f"{self.name}.map() needs at least one list argument to map over; call {self.name}(...) for a single call"
            )
        self._bind(site, (), {**mapped, **whole})
        literal = {p: len(v) for p, v in mapped.items() if isinstance(v, list)}
        if len(set(literal.values())) > 1:
            sizes = ", ".join(f"'{p}' has {n}" for p, n in literal.items())
            raise site.error(
                f"{self.name}.map() zips its lists, which must have equal lengths: {sizes} items"
            )
        order = list(self._signature.parameters) if self._signature is not None else []
        args = {
            p: (mapped[p] if p in mapped else whole[p]) for p in order if p in mapped or p in whole
        }
        mapped = {p: mapped[p] for p in order if p in mapped}
        return LazyResult(self, args, mapped, site)


def _strings(value: list[str] | tuple[str, ...] | None, what: str, site: _Site) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise site.error(f"{what} takes a list of names, found {type(value).__name__}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise site.error(f"{what} takes a list of names, found an item {item!r}")
    return list(value)


def _opt_str(value: str | None, what: str, site: _Site) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise site.error(f"{what} takes a non-empty string, found {value!r}")
    return value


def _env(value: dict[str, str] | None, site: _Site) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise site.error(f"env= takes a dict of names to strings, found {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise site.error(f"env= takes a dict of names to strings, found the key {key!r}")
        if key.startswith(("CASCADE_", "CSPY_")):
            raise site.error(
                f"env= cannot set {key}: names starting with CASCADE_ or CSPY_ belong to cascade"
            )
        if not isinstance(item, str):
            raise site.error(f"env= value of {key} must be a string, found {type(item).__name__}")
    return dict(value)


def _resources(
    value: dict[str, str | int | float] | None, site: _Site
) -> dict[str, str | int | float] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise site.error(
            f"resources= takes a dict such as {{'cpu': 2, 'memory': '4Gi'}}, found {type(value).__name__}"
        )
    for key, item in value.items():
        if (
            not isinstance(key, str)
            or isinstance(item, bool)
            or not isinstance(item, (str, int, float))
        ):
            raise site.error(
                f"resources= takes names to amounts such as {{'cpu': 2, 'memory': '4Gi'}}, found {key!r}: {item!r}"
            )
    return dict(value)


class _Decorator:
    """`@cs.task(...)` with options: applied to the function next."""

    def __init__(self, options: dict[str, Any], site: _Site) -> None:
        self.options = options
        self.site = site

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    def __call__(self, fn: Callable[P, Any], /) -> Task[P, Any]:
        return Task(fn, site=self.site, **self.options)


@overload
def task(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    retry: Retry | int | None = None,
    timeout: str | float | None = None,
    secrets: list[str] | tuple[str, ...] | None = None,
    env: dict[str, str] | None = None,
    runner: str | None = None,
    image: str | None = None,
    resources: dict[str, str | int | float] | None = None,
) -> _Decorator: ...
def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: Retry | int | None = None,
    timeout: str | float | None = None,
    secrets: list[str] | tuple[str, ...] | None = None,
    env: dict[str, str] | None = None,
    runner: str | None = None,
    image: str | None = None,
    resources: dict[str, str | int | float] | None = None,
) -> Task[..., Any] | _Decorator:
    """Makes a function (def or async def, at module level) a task.

    `@cs.task` or `@cs.task(name=, retry=cs.Retry(limit=2, backoff="5s"), timeout="10m",
    secrets=["TOKEN"], env={"K": "v"}, runner="small", image="python:3.12",
    resources={"cpu": 2, "memory": "4Gi"})`.
    """
    site = _site(1)
    options: dict[str, Any] = {
        "name": name,
        "retry": retry,
        "timeout": timeout,
        "secrets": secrets,
        "env": env,
        "runner": runner,
        "image": image,
        "resources": resources,
    }
    if fn is None:
        return _Decorator(options, site)
    return Task(fn, site=site, **options)
