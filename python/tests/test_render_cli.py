"""`python -m cascade render path/file.py:function`: one JSON object on stdout, or
`path/file.py:LINE: error: MESSAGE` lines on stderr and exit 1."""

from __future__ import annotations

import subprocess
import sys

from conftest import Project, env_for_runs

PIPELINE = """\
import cascade as cs

print("imported")


@cs.task
def double(x: int) -> int:
    return 2 * x


def good():
    first = double(1)
    return double(first)


def wrong_name():
    return double(y=1)


def uses_bool():
    if double(1):
        return double(2)
    return double(3)


def returns_nothing():
    double(1)


if __name__ == "__main__":
    raise SystemExit("the render must not run the __main__ block")
"""


def test_render_prints_document_and_sources(project: Project) -> None:
    project.write("ci/pipe.py", PIPELINE)
    rendered = project.render("ci/pipe.py:good")
    assert rendered.code == 0, rendered.stderr
    assert rendered.document["name"] == "good"
    assert list(rendered.document["jobs"]) == ["double", "double_2"]
    assert rendered.sources == {
        "": {"file": "ci/pipe.py", "line": 11},
        "double": {"file": "ci/pipe.py", "line": 12},
        "double_2": {"file": "ci/pipe.py", "line": 13},
    }
    # What the module printed went to stderr: stdout stays one JSON document.
    assert "imported" in rendered.stderr
    entry = rendered.document["jobs"]["double"]["env"]["CSPY_TASK"]
    assert '"entry":"ci/pipe.py:double"' in entry


def test_wrong_argument_name_is_reported_at_the_call(project: Project) -> None:
    project.write("pipe.py", PIPELINE)
    rendered = project.render("pipe.py:wrong_name")
    assert rendered.code == 1
    assert rendered.stderr.splitlines()[-1] == (
        "pipe.py:17: error: task 'double' has no parameter 'y' (its parameters: x)"
    )


def test_other_mistakes_name_the_users_line(project: Project) -> None:
    project.write("pipe.py", PIPELINE)
    rendered = project.render("pipe.py:uses_bool")
    assert rendered.code == 1
    last = rendered.stderr.splitlines()[-1]
    assert last.startswith("pipe.py:21: error: TypeError: cannot use as a bool"), last
    nothing = project.render("pipe.py:returns_nothing")
    assert nothing.code == 1
    assert nothing.stderr.splitlines()[-1] == (
        "pipe.py:26: error: returns_nothing() must return the LazyResult of the task that ends the pipeline, found NoneType"
    )


def test_unknown_function_lists_the_functions(project: Project) -> None:
    project.write("pipe.py", PIPELINE)
    rendered = project.render("pipe.py:nope")
    assert rendered.code == 1
    assert rendered.stderr.splitlines()[-1] == (
        "pipe.py:1: error: pipe.py has no function 'nope' (its functions: good, returns_nothing, uses_bool, wrong_name)"
    )


def test_import_errors_point_at_the_line(project: Project) -> None:
    project.write("syntax.py", "import cascade\n\ndef f(:\n    pass\n")
    rendered = project.render("syntax.py:f")
    assert rendered.code == 1
    assert rendered.stderr.startswith("syntax.py:3: error: cannot import syntax.py: SyntaxError")
    project.write("raises.py", "import cascade\n\nraise ValueError('at import')\n")
    raised = project.render("raises.py:f")
    assert raised.code == 1
    assert (
        raised.stderr.splitlines()[-1]
        == "raises.py:3: error: cannot import raises.py: ValueError: at import"
    )
    missing = project.render("missing.py:f")
    assert missing.code == 1
    assert missing.stderr.startswith("missing.py:1: error: no such file")


def test_usage_errors_exit_2() -> None:
    for args in ([], ["render"], ["render", "no-colon"], ["draw", "x.py:f"]):
        proc = subprocess.run(
            [sys.executable, "-m", "cascade", *args],
            capture_output=True,
            text=True,
            env=env_for_runs(),
        )
        assert proc.returncode == 2, args
        assert "usage: python -m cascade render path/file.py:function" in proc.stderr


ENV_BY_VARIABLE = """\
import cascade as cs


@cs.task
def deploy() -> str:
    name = "TOKEN"
    return cs.Env(name)


def pipeline():
    return deploy()
"""


def test_an_env_name_that_is_not_a_literal_is_an_error_at_its_line(project: Project) -> None:
    project.write("pipe.py", ENV_BY_VARIABLE)
    rendered = project.render("pipe.py:pipeline")
    assert rendered.code == 1
    last = rendered.stderr.splitlines()[-1]
    assert last.startswith("pipe.py:7: error: "), last
    assert "literal" in last, last
