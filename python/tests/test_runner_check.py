"""The runner's check of decoded arguments against a task's annotations (in process)."""

from __future__ import annotations

from typing import Any, Optional, Union

import pytest
from cascade.runner import TaskError, check


class Custom:
    pass


def everything(
    i: int,
    f: float,
    s: str,
    b: bool,
    n: None,
    li: list[int],
    ls: list[str],
    d: dict[str, int],
    o: Optional[int],  # noqa: UP045 (the typing spelling is what is tested)
    u: int | str,
    uu: Union[list[int], None],  # noqa: UP007
    t: tuple[int, str],
    a: Any,
    c: Custom,
    plain: list,  # type: ignore[type-arg]
    nested: dict[str, list[float]],
) -> None:
    pass


GOOD: dict[str, Any] = {
    "i": 1,
    "f": 2,
    "s": "x",
    "b": True,
    "n": None,
    "li": [1, 2],
    "ls": ["a"],
    "d": {"k": 1},
    "o": None,
    "u": "x",
    "uu": [3],
    "t": [1, "x"],
    "a": {"any": ["thing"]},
    "c": {"not": "checked"},
    "plain": [1, "x"],
    "nested": {"k": [1, 2.5]},
}


def test_values_that_fit_pass_converted() -> None:
    out = check(everything, dict(GOOD), "everything")
    assert out["f"] == 2.0 and isinstance(out["f"], float)
    assert out["t"] == (1, "x")
    assert out["nested"] == {"k": [1.0, 2.5]}
    assert out["c"] == {"not": "checked"}


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("i", "1", "argument 'i' of task 'everything' expects int, found str (\"1\")"),
        ("i", True, "expects int, found bool (true)"),
        ("i", 1.5, "expects int, found float (1.5)"),
        ("f", "2", "expects float, found str"),
        ("b", 1, "expects bool, found int (1)"),
        ("n", 0, "expects None, found int (0)"),
        ("li", [1, "2"], 'expects list[int], found list ([1, "2"])'),
        ("d", {"k": "v"}, "expects dict[str, int], found dict"),
        ("o", "x", "expects Optional[int], found str"),
        ("u", 1.5, "expects int | str, found float"),
        ("t", [1, 2], "expects tuple[int, str], found list ([1, 2])"),
        ("s", None, "expects str, found None (null)"),
    ],
)
def test_a_mismatch_names_the_parameter_and_both_types(
    param: str, value: Any, message: str
) -> None:
    with pytest.raises(TaskError) as e:
        check(everything, {**GOOD, param: value}, "everything")
    assert message in str(e.value)


def test_every_mismatch_is_reported() -> None:
    with pytest.raises(TaskError) as e:
        check(everything, {**GOOD, "i": "x", "s": 1}, "everything")
    assert "'i'" in str(e.value) and "'s'" in str(e.value)


def test_unannotated_parameters_are_not_checked() -> None:
    def loose(x, y: int):  # type: ignore[no-untyped-def]
        return x

    assert check(loose, {"x": object(), "y": 1}, "loose")["y"] == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("null", []),  # the local engine: a map over an empty list
        ("", []),  # Argo: the aggregate of a task with no children may stay empty
        ('["1", "[2]"]', [1, [2]]),  # each item's result is a JSON text
    ],
)
def test_a_fan_in_argument_decodes_to_the_list_of_item_results(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: list[Any]
) -> None:
    from cascade.runner import _decode

    monkeypatch.setenv("CSPY_ARG_0", text)
    assert _decode("results", {"env": "CSPY_ARG_0", "kind": "fanin"}) == expected
