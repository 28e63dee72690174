"""Functions the lowering adds as jobs of their own (they are not user tasks)."""

from __future__ import annotations

from typing import Any


def zip_lists(**lists: Any) -> list[dict[str, Any]]:
    """The items of a `.map()` whose lists exist only at run time: one object per item,
    `{param: value, ...}`, zipping lists of equal length."""
    for name, values in lists.items():
        if not isinstance(values, list):
            raise TypeError(
                f".map() argument '{name}' must be a list, found {type(values).__name__}"
            )
    lengths = {name: len(values) for name, values in lists.items()}
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"'{name}' has {n}" for name, n in lengths.items())
        raise ValueError(f".map() zips its lists, which must have equal lengths: {sizes} items")
    names = list(lists)
    return [dict(zip(names, row, strict=True)) for row in zip(*lists.values(), strict=True)]
