"""The engine's duration syntax (`500ms`, `30s`, `10m`, `1h30m`, `2d`), read once for
the task options of `@cs.task` and for `cs.shell(timeout=)`. Imports nothing at load:
a task process imports this package."""

from __future__ import annotations

_PART = r"([0-9]+)(ms|s|m|h|d)"
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def seconds(text: str) -> float | None:
    """The seconds `text` says, or `None` when it is not a duration (empty included)."""
    import re

    if not re.fullmatch(f"(?:{_PART})+", text):
        return None
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in re.findall(_PART, text))
