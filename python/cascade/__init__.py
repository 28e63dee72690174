"""Cascade: CI/CD and DAG pipelines as testable Python code.

```python
import cascade as cs

@cs.task
def double(x: int) -> int:
    return 2 * x

def pipeline() -> cs.LazyResult[list[int]]:
    return double.map(x=[1, 2, 3])
```

Calling a task builds a `LazyResult` (nothing runs); `cs.render(pipeline())` gives the
pipeline document and `cascade run path/file.py:pipeline` runs it. Every task runs in its
own process (`python -m cascade.runner`), so this package is kept cheap to import.
"""

from __future__ import annotations

from ._env import Env
from ._graph import BuildError, LazyResult, Param, Retry, Task, task, unmapped
from ._lower import render
from ._shell import ShellError, shell

# Keep the imports of these modules cheap (no asyncio, typing or inspect at module level):
# every task process imports this package. What only the caller of a run needs (`run`,
# `RunFailed`, `submit`, `Connector`, `connectors`: subprocess, asyncio, typing) loads on
# first use.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from . import connectors
    from ._connect import Connector
    from ._run import RunFailed, run
    from ._submit import SubmitError, SubmitFailed, submit

_LAZY = {
    "run": ("._run", "run"),
    "RunFailed": ("._run", "RunFailed"),
    "submit": ("._submit", "submit"),
    "SubmitError": ("._submit", "SubmitError"),
    "SubmitFailed": ("._submit", "SubmitFailed"),
    "Connector": ("._connect", "Connector"),
    "connectors": (".connectors", None),
}


def __getattr__(name: str) -> object:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'cascade' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(where[0], __name__)
    value = module if where[1] is None else getattr(module, where[1])
    globals()[name] = value
    return value


__all__ = [
    "BuildError",
    "Connector",
    "Env",
    "LazyResult",
    "Param",
    "Retry",
    "RunFailed",
    "ShellError",
    "SubmitError",
    "SubmitFailed",
    "Task",
    "connectors",
    "render",
    "run",
    "shell",
    "submit",
    "task",
    "unmapped",
]
