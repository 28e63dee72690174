"""Building graphs: what `@cs.task`, calls, `.map()`, `.after()` and `cs.Param` accept and
refuse, at build time, with the file and line of the mistake."""

from __future__ import annotations

import sys
from typing import Any

import cascade as cs
import pytest


@cs.task
def double(x: int) -> int:
    return 2 * x


@cs.task
def pair(a: int, b: str = "b") -> str:
    return f"{a}{b}"


@cs.task
async def fetch(url: str) -> str:
    return url


@cs.task
def total(values: list[int]) -> int:
    return sum(values)


def here() -> int:
    """The line of the caller (the next statement is written on the line after it)."""
    return sys._getframe(1).f_lineno + 1


def test_task_fn_is_the_plain_function() -> None:
    assert double.fn(4) == 8
    assert double.fn.__name__ == "double"
    assert pair.fn(1) == "1b"
    assert double.name == "double"
    assert not double.is_async
    assert fetch.is_async


def test_calling_a_task_runs_nothing_and_returns_a_lazy_result() -> None:
    result = double(3)
    assert isinstance(result, cs.LazyResult)
    assert result.task is double
    assert not result.is_mapped
    assert "double" in repr(result)


def test_wrong_argument_name_names_the_call_site_and_the_task() -> None:
    with pytest.raises(cs.BuildError) as e:
        line = here()
        double(y=1)
    assert e.value.file == __file__
    assert e.value.line == line
    assert "double" in e.value.message and "'y'" in e.value.message
    assert "its parameters: x" in e.value.message
    assert str(e.value).startswith(f"{__file__}:{line}: ")


def test_missing_and_extra_arguments_are_build_errors() -> None:
    with pytest.raises(cs.BuildError, match="missing a required argument: 'a'"):
        pair(b="x")
    with pytest.raises(cs.BuildError, match="too many positional arguments"):
        double(1, 2)


def test_map_with_wrong_name_names_the_call_site() -> None:
    with pytest.raises(cs.BuildError) as e:
        line = here()
        double.map(z=[1, 2])
    assert (e.value.file, e.value.line) == (__file__, line)
    assert "'z'" in e.value.message


@pytest.mark.parametrize(
    ("use", "words"),
    [
        (bool, "bool"),
        (iter, "iterate"),
        (str, "string"),
        (len, "len()"),
        (lambda r: f"{r}", "format"),
        (lambda r: 1 in r, "membership"),
        (lambda r: r[0], "index"),
    ],
)
def test_lazy_result_refuses_to_be_used_as_a_value(use: Any, words: str) -> None:
    with pytest.raises(TypeError) as e:
        use(double(1))
    assert words in str(e.value)
    assert "exists only when the run happens; pass it to another task" in str(e.value)


def test_if_on_a_lazy_result_raises_with_the_hint() -> None:
    result = double(1)
    with pytest.raises(TypeError, match="pass it to another task"):
        if result:
            pass


def test_param_refuses_to_be_used_as_a_value() -> None:
    p = cs.Param("n", default=1)
    with pytest.raises(TypeError, match="exists only when the run happens"):
        bool(p)
    with pytest.raises(TypeError, match="exists only when the run happens"):
        f"{p}"


def test_lambda_is_refused_at_decoration() -> None:
    with pytest.raises(cs.BuildError, match="a lambda cannot be a task") as e:
        line = here()
        cs.task(lambda: 1)
    assert (e.value.file, e.value.line) == (__file__, line)


def test_nested_function_is_refused_at_decoration() -> None:
    with pytest.raises(cs.BuildError, match="defined inside a function") as e:

        @cs.task
        def inner() -> int:
            return 1

    assert e.value.file == __file__
    assert "module level" in e.value.message


def test_nested_function_with_options_is_refused() -> None:
    with pytest.raises(cs.BuildError, match="defined inside a function"):

        @cs.task(timeout="1m")
        def inner() -> int:
            return 1


def test_star_args_and_bad_options_are_refused() -> None:
    def star(*xs: int) -> int:
        return 0

    star.__qualname__ = "star"
    with pytest.raises(cs.BuildError, match=r"\*args or \*\*kwargs"):
        cs.task(star)

    def plain() -> None:
        pass

    plain.__qualname__ = "plain"
    with pytest.raises(cs.BuildError, match="duration"):
        cs.task(timeout="ten minutes")(plain)
    with pytest.raises(cs.BuildError, match="task name"):
        cs.task(name="has space")(plain)
    with pytest.raises(cs.BuildError, match="CASCADE_"):
        cs.task(env={"CASCADE_X": "1"})(plain)
    with pytest.raises(cs.BuildError, match="list of names"):
        cs.task(secrets="TOKEN")(plain)  # type: ignore[arg-type]
    with pytest.raises(cs.BuildError, match="whole number"):
        cs.Retry(limit=-1)


def test_constants_must_be_json() -> None:
    with pytest.raises(cs.BuildError, match="argument 'x' of task 'double' is a object"):
        double(object())
    with pytest.raises(cs.BuildError, match="LazyResult inside a list"):
        total([double(1), double(2)])


def test_map_checks_equal_lengths_of_literal_lists() -> None:
    with pytest.raises(cs.BuildError) as e:
        line = here()
        pair.map(a=[1, 2, 3], b=["x"])
    assert (e.value.file, e.value.line) == (__file__, line)
    assert "'a' has 3" in e.value.message and "'b' has 1" in e.value.message


def test_map_needs_a_list_and_unmapped_marks_a_constant() -> None:
    with pytest.raises(cs.BuildError, match=r"must be a list to map over .* cs.unmapped"):
        pair.map(a=[1], b="x")
    with pytest.raises(cs.BuildError, match="at least one list"):
        pair.map(a=cs.unmapped(1))
    result = pair.map(a=[1, 2], b=cs.unmapped("x"))
    assert result.is_mapped
    with pytest.raises(cs.BuildError, match=r"only for \.map"):
        pair(a=cs.unmapped(1))


def test_after_changes_in_place_and_returns_the_same_result() -> None:
    a, b = double(1), double(2)
    c = double(3)
    assert c.after(a) is c
    c.after(b)
    doc = cs.render(c)
    assert doc["jobs"]["double_3"]["needs"] == ["double", "double_2"]
    with pytest.raises(cs.BuildError, match="takes LazyResults"):
        c.after(1)  # type: ignore[arg-type]


def test_after_cycle_is_a_build_error() -> None:
    a = double(1)
    b = double(2).after(a)
    line = here()
    a.after(b)
    with pytest.raises(cs.BuildError, match="cycle") as e:
        cs.render(b)
    assert (e.value.file, e.value.line) == (__file__, line)


def test_render_takes_a_lazy_result_or_a_pipeline_function() -> None:
    def pipeline() -> cs.LazyResult[int]:
        return double(1)

    assert cs.render(pipeline)["name"] == "pipeline"
    assert cs.render(pipeline())["name"] == "pipeline"
    with pytest.raises(cs.BuildError, match="found a task"):
        cs.render(double)  # type: ignore[arg-type]


def test_second_call_of_a_task_gets_a_numbered_job_id() -> None:
    first = double(1)
    second = double(first)
    third = double(second)
    assert list(cs.render(third)["jobs"]) == ["double", "double_2", "double_3"]


def test_param_names_and_defaults() -> None:
    with pytest.raises(cs.BuildError, match=r"cs\.Param name"):
        cs.Param("has space")
    names = cs.Param("names", default=["a"])
    doc = cs.render(double.map(x=names))
    assert doc["on"]["workflow_dispatch"]["inputs"] == {"names": {"default": '["a"]'}}
    required = cs.render(double(cs.Param("n")))
    assert required["on"]["workflow_dispatch"]["inputs"] == {"n": {"required": True}}
    with pytest.raises(cs.BuildError, match="declared twice with different defaults"):
        cs.render(pair(cs.Param("k", default=1), cs.Param("k", default=2)))


def test_secrets_are_the_union_of_the_option_and_env_reads() -> None:
    doc = cs.render(reads_secret())
    assert doc["jobs"]["reads_secret"]["secrets"] == ["A_TOKEN", "B_TOKEN"]


@cs.task(secrets=["B_TOKEN"])
def reads_secret() -> int:
    return len(cs.Env("A_TOKEN"))


@cs.task(name="double_2")
def named_like_a_second_call(x: int) -> int:
    return x


def test_numbered_ids_skip_ids_in_use() -> None:
    taken = named_like_a_second_call(1)
    first = double(taken)
    second = double(first)
    assert list(cs.render(second)["jobs"]) == ["double_2", "double", "double_3"]
