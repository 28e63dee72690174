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
from ._submit import SubmitError, SubmitFailed, submit

# Keep the imports of these modules cheap (no asyncio, typing or inspect at module level):
# every task process imports this package.

__all__ = [
    "BuildError",
    "Env",
    "LazyResult",
    "Param",
    "Retry",
    "ShellError",
    "SubmitError",
    "SubmitFailed",
    "Task",
    "render",
    "shell",
    "submit",
    "task",
    "unmapped",
]
