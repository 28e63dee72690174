"""cs.shell with real processes: forms, quoting, streaming, errors, timeouts, sync/async."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import pickle
import select
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cascade import _shell as _shell_module
from cascade._shell import ShellError, ShellResult, shell

# Where the `cascade` under test was imported from (the source tree's python/, or the
# site-packages of the venv it is installed in): child interpreters get the same one.
PACKAGE_ROOT = Path(_shell_module.__file__).resolve().parents[1]


def _gone(pid: int, within: float = 10.0) -> bool:
    """Whether process `pid` has ended (or is a zombie) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


def _read_line(stream: object, within: float = 20.0) -> str:
    """One line from a child's pipe, failing the test instead of hanging."""
    assert hasattr(stream, "readline") and hasattr(stream, "fileno")
    ready, _, _ = select.select([stream], [], [], within)
    assert ready, f"no output within {within}s"
    line: str = stream.readline()
    return line


# ---------------------------------------------------------------------------------------
# Forms


def test_a_string_runs_with_sh_and_returns_stdout() -> None:
    out = shell("echo one | tr a-z A-Z && echo two")
    assert out == "ONE\ntwo\n"
    assert isinstance(out, str) and isinstance(out, ShellResult)
    assert out.returncode == 0
    assert out.cmd == "echo one | tr a-z A-Z && echo two"


def test_a_list_runs_as_argv_without_a_shell(tmp_path: Path) -> None:
    out = shell(["printf", "%s|", "a b", "$(touch MARK)", "*", tmp_path / "x y"], cwd=tmp_path)
    assert out == f"a b|$(touch MARK)|*|{tmp_path / 'x y'}|"
    assert not (tmp_path / "MARK").exists()
    assert out.cmd == ["printf", "%s|", "a b", "$(touch MARK)", "*", str(tmp_path / "x y")]


NASTY = [
    "a b",
    "it's",
    'say "hi"',
    "$(touch MARK)",
    "`touch MARK`",
    "; touch MARK",
    "&& touch MARK",
    "| touch MARK",
    "x\ntouch MARK",
    "$HOME",
    "*",
    "~",
    "'; touch MARK; '",
    '"; touch MARK; "',
    "\\",
    "",
    "-n",
]


@pytest.mark.parametrize("value", NASTY)
def test_values_are_quoted_so_nothing_is_injected(tmp_path: Path, value: str) -> None:
    (tmp_path / "file").write_text("")  # something for a glob to match
    out = shell("printf '[%s]' {v} && printf '(%s)' --x={v}", v=value, cwd=tmp_path)
    assert out == f"[{value}](--x={value})"
    assert not (tmp_path / "MARK").exists()


def test_list_values_become_several_quoted_words(tmp_path: Path) -> None:
    files: list[str | Path] = ["a b", "c;touch MARK", Path("d")]
    out = shell("printf '[%s]' {files} {n} {f}", files=files, n=3, f=1.5, cwd=tmp_path)
    assert out == "[a b][c;touch MARK][d][3][1.5]"
    assert shell("printf '[%s]' x {none}", none=[]) == "[x]"
    assert not (tmp_path / "MARK").exists()


def test_literal_braces_are_doubled() -> None:
    assert shell("echo {{x}} {v}", v="1") == "{x} 1\n"
    assert shell("echo 'a b' | awk '{{print $2}}'") == "b\n"
    assert shell("X=7; echo ${{X}}") == "7\n"


def test_a_placeholder_without_a_value_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"placeholder \{pkg\} .* has no value; pass pkg="):
        shell("touch MARK; ruff check {pkg}", cwd=tmp_path)
    with pytest.raises(ValueError, match=r"env is cs.shell's own option"):
        shell("echo {env}")
    assert not (tmp_path / "MARK").exists()


def test_a_value_without_a_placeholder_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"pkg= given but .* has no placeholder \{pkg\}"):
        shell("echo {p}", p="x", pkg="y")


def test_bad_placeholders_are_errors_with_a_hint() -> None:
    with pytest.raises(ValueError, match=r"\{print \$1\} .* is not a placeholder.*\{\{"):
        shell("awk '{print $1}'")
    with pytest.raises(ValueError, match=r"\{\} .* is not a placeholder"):
        shell("echo {}", x=1)
    with pytest.raises(ValueError, match=r"\{p!r\} .* is not a placeholder"):
        shell("echo {p!r}", p=1)
    with pytest.raises(ValueError, match=r"Single '\}'.*\{\{ or \}\}"):
        shell("echo }")


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("echo '{v}'", "inside '...' quotes"),
        ('echo "{v}"', 'inside "..." quotes'),
        ('echo "x $(echo {v})"', 'inside "..." quotes'),
        ("echo \\{v}", "follows a backslash"),
        ("echo ${v}", "follows '\\$'"),
        ("cat <<EOF\n{v}\nEOF", "inside a here-document"),
        ("cat <<-'END'\n\t{v}\n\tEND", "inside a here-document"),
    ],
)
def test_placeholders_where_quoting_cannot_protect_are_refused(
    tmp_path: Path, template: str, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        shell("touch MARK; " + template, v="$(touch MARK)", cwd=tmp_path)
    assert not (tmp_path / "MARK").exists()


def test_quotes_in_comments_and_finished_here_documents_do_not_confuse_the_check(
    tmp_path: Path,
) -> None:
    out = shell(
        "cat <<EOF\nit's \"here\"\nEOF\necho {v} # don't {v}\necho 'a' \"b\" {v}",
        v="$(touch MARK)",
        cwd=tmp_path,
    )
    assert out == 'it\'s "here"\n$(touch MARK)\na b $(touch MARK)\n'
    assert not (tmp_path / "MARK").exists()
    out = shell("cat <<-\\END\n\tit's\n\tEND\necho {v}", v="a'b")
    assert out == "it's\na'b\n"


def test_wrong_argument_shapes_are_errors() -> None:
    with pytest.raises(TypeError, match="given with a list command"):
        shell(["echo", "x"], p="1")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"value of \{p\} is a dict"):
        shell("echo {p}", p={"a": 1})  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"value of \{p\} is a bool"):
        shell("echo {p}", p=True)
    with pytest.raises(TypeError, match="item 1 of the command list is a int"):
        shell(["echo", 1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="command list is empty"):
        shell([])
    with pytest.raises(TypeError, match="found bytes"):
        shell(b"echo")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="env= takes strings"):
        shell("true", env={"A": 1})  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------
# Output


def test_stdout_is_returned_and_stderr_is_not_but_both_reach_the_log(
    capfd: pytest.CaptureFixture[str],
) -> None:
    out = shell("echo to-out; echo to-err >&2; printf 'no newline'")
    assert out == "to-out\nno newline"
    captured = capfd.readouterr()
    assert captured.out == "to-out\nno newline\n"
    assert captured.err == "to-err\n"


def test_output_is_decoded_as_utf8_with_replacement() -> None:
    assert shell("printf 'caf\\303\\251 \\377ok'") == "café \ufffdok"


STREAMING_SCRIPT = """
import asyncio, sys
from cascade._shell import shell

CMD = (
    "echo first; echo first-err >&2; "
    "while [ ! -e GO ]; do sleep 0.02; done; echo second"
)

if sys.argv[1] == "sync":
    out = shell(CMD)
else:
    async def main():
        return await shell(CMD)
    out = asyncio.run(main())
print("returned", repr(out), flush=True)
"""


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_output_streams_line_by_line_while_the_command_runs(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "stream.py"
    script.write_text(textwrap.dedent(STREAMING_SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    env.pop("PYTHONUNBUFFERED", None)  # the flushing is cs.shell's, not the interpreter's
    with subprocess.Popen(
        [sys.executable, str(script), mode],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            # The command cannot finish before GO exists, so these lines reached the
            # parent's stdout and stderr while it was still running.
            assert _read_line(proc.stdout) == "first\n"
            assert _read_line(proc.stderr) == "first-err\n"
            assert proc.poll() is None
            (tmp_path / "GO").touch()
            assert _read_line(proc.stdout) == "second\n"
            assert _read_line(proc.stdout) == "returned 'first\\nsecond\\n'\n"
            assert proc.wait(timeout=20) == 0
        finally:
            proc.kill()


# ---------------------------------------------------------------------------------------
# Failures


def test_a_non_zero_exit_raises_shell_error_with_its_fields() -> None:
    with pytest.raises(ShellError) as info:
        shell("echo partial; for i in $(seq 1 30); do echo err-$i >&2; done; exit 3")
    e = info.value
    assert e.returncode == 3
    assert e.cmd == "echo partial; for i in $(seq 1 30); do echo err-$i >&2; done; exit 3"
    assert e.stdout == "partial\n"
    assert e.stderr_tail == "\n".join(f"err-{i}" for i in range(11, 31))
    assert not e.timed_out
    message = str(e)
    assert message.startswith("cs.shell: command failed with exit code 3: echo partial;")
    assert message.endswith("stderr (last 20 lines):\n" + e.stderr_tail)
    assert "err-10\n" not in message


def test_shell_error_of_a_list_command_and_of_a_signal() -> None:
    with pytest.raises(ShellError) as info:
        shell(["sh", "-c", "kill -9 $$"])
    assert info.value.returncode == -9
    assert info.value.cmd == ["sh", "-c", "kill -9 $$"]
    assert "killed by SIGKILL (exit code -9): sh -c 'kill -9 $$'" in str(info.value)
    assert str(info.value).endswith("(no stderr output)")


def test_a_missing_program_is_a_shell_error_127() -> None:
    with pytest.raises(ShellError, match="'no-such-program-x' not found") as info:
        shell(["no-such-program-x", "arg"])
    assert info.value.returncode == 127
    with pytest.raises(ShellError) as info:
        shell("no-such-program-x")
    assert info.value.returncode == 127
    assert "not found" in info.value.stderr_tail


def test_check_false_returns_stdout_and_the_code() -> None:
    out = shell("echo x; echo y >&2; exit 4", check=False)
    assert out == "x\n"
    assert out.returncode == 4


def test_shell_error_and_result_survive_pickling() -> None:
    with pytest.raises(ShellError) as info:
        shell("echo o; echo e >&2; exit 2")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.returncode, copy.cmd, copy.stdout, copy.stderr_tail, str(copy)) == (
        2,
        info.value.cmd,
        "o\n",
        "e",
        str(info.value),
    )
    result = pickle.loads(pickle.dumps(shell("echo r")))
    assert (result, result.returncode) == ("r\n", 0)


# ---------------------------------------------------------------------------------------
# cwd, env, timeout


def test_cwd_sets_the_directory(tmp_path: Path) -> None:
    (tmp_path / "here.txt").write_text("")
    assert shell("ls", cwd=tmp_path) == "here.txt\n"
    assert shell(["ls"], cwd=str(tmp_path)) == "here.txt\n"
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        shell("ls", cwd=tmp_path / "missing")


def test_env_adds_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_SHELL_BASE", "base")
    out = shell('echo "$CS_SHELL_BASE $CS_SHELL_ADDED"', env={"CS_SHELL_ADDED": "added"})
    assert out == "base added\n"
    assert "CS_SHELL_ADDED" not in os.environ
    assert shell(["sh", "-c", "echo $CS_SHELL_BASE"], env={"CS_SHELL_BASE": "over"}) == "over\n"


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    with pytest.raises(ShellError) as info:
        shell("sleep 60 & echo $! > pid; echo started; wait", timeout="500ms", cwd=tmp_path)
    e = info.value
    assert e.timed_out
    assert e.stdout == "started\n"
    assert str(e).startswith("cs.shell: command timed out after 0.5s")
    grandchild = int((tmp_path / "pid").read_text())
    assert _gone(grandchild), f"the grandchild sleep {grandchild} survived the timeout"


def test_a_timeout_also_covers_a_background_child_holding_the_pipes(tmp_path: Path) -> None:
    # sh exits at once; the sleep it left in the background keeps stdout open.
    with pytest.raises(ShellError, match="timed out") as info:
        shell("sleep 60 & echo $! > pid", timeout=0.5, cwd=tmp_path)
    assert _gone(int((tmp_path / "pid").read_text()))
    assert info.value.timed_out


@pytest.mark.parametrize(
    ("timeout", "error"),
    [("5x", "not a duration"), ("", "empty"), (0, "more than zero"), (-1, "more than zero")],
)
def test_bad_timeouts_are_errors(timeout: float | str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        shell("true", timeout=timeout)


def test_a_duration_string_timeout_that_is_not_reached() -> None:
    assert shell("echo ok", timeout="1m30s") == "ok\n"


# ---------------------------------------------------------------------------------------
# Async


def test_awaited_in_async_code_two_commands_run_at_the_same_time(tmp_path: Path) -> None:
    # Each command waits for the other's file: they can only finish if they overlap, so
    # together they take the longer one's time, not the sum.
    a = "touch a; while [ ! -e b ]; do sleep 0.02; done; echo A"
    b = "touch b; while [ ! -e a ]; do sleep 0.02; done; echo B"

    async def main() -> list[str]:
        return list(
            await asyncio.gather(
                shell(a, cwd=tmp_path, timeout=20), shell(b, cwd=tmp_path, timeout=20)
            )
        )

    assert asyncio.run(main()) == ["A\n", "B\n"]


def test_an_awaited_command_does_not_block_the_event_loop(tmp_path: Path) -> None:
    async def release() -> None:
        await asyncio.sleep(0.1)
        (tmp_path / "go").touch()

    async def main() -> str:
        task = asyncio.ensure_future(release())
        out = await shell(
            "while [ ! -e go ]; do sleep 0.02; done; echo done", cwd=tmp_path, timeout=20
        )
        await task
        return out

    assert asyncio.run(main()) == "done\n"


def test_async_failures_check_false_and_timeout(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(ShellError) as info:
            await shell("echo o; echo e >&2; exit 5")
        assert (info.value.returncode, info.value.stdout, info.value.stderr_tail) == (5, "o\n", "e")
        out = await shell(["sh", "-c", "echo q; exit 6"], check=False)
        assert (out, out.returncode) == ("q\n", 6)
        with pytest.raises(ShellError, match=r"timed out after 0\.3s") as info:
            await shell("sleep 60 & echo $! > pid; wait", timeout=0.3, cwd=tmp_path)
        assert info.value.timed_out
        with pytest.raises(ShellError, match="not found"):
            await shell(["no-such-program-x"])

    asyncio.run(main())
    assert _gone(int((tmp_path / "pid").read_text()))


def test_cancelling_an_awaited_command_kills_its_group(tmp_path: Path) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(shell("sleep 60 & echo $! > pid; wait", cwd=tmp_path))
        while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert _gone(int((tmp_path / "pid").read_text()))


# A task cancelled before its first step never awaited its command: that warns.
@pytest.mark.filterwarnings("ignore:cs.shell.*was never awaited:RuntimeWarning")
def test_a_cancellation_at_any_point_of_the_start_leaves_nothing_running(tmp_path: Path) -> None:
    async def main(steps: int, pidfile: Path) -> None:
        task = asyncio.ensure_future(shell(f"sleep 60 & echo $! > {pidfile}; wait"))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    for steps in range(12):
        pidfile = tmp_path / f"pid{steps}"
        asyncio.run(main(steps, pidfile))
        if pidfile.exists() and pidfile.read_text():
            assert _gone(int(pidfile.read_text())), f"cancelled after {steps} steps"


def test_used_without_await_in_async_code_it_refuses_and_does_not_run(tmp_path: Path) -> None:
    async def main() -> None:
        pending = shell("touch MARK; echo x", cwd=tmp_path)
        with pytest.raises(TypeError, match=r"has not run yet.*await cs.shell\(\.\.\.\)"):
            pending.splitlines()
        with pytest.raises(TypeError, match=r"asyncio\.to_thread"):
            str(pending)
        with pytest.raises(TypeError, match="has not run yet"):
            _ = pending == "x\n"
        with pytest.raises(TypeError, match="has not run yet"):
            bool(pending)

    asyncio.run(main())
    assert not (tmp_path / "MARK").exists()


def test_a_pending_command_never_awaited_warns() -> None:
    async def main() -> None:
        shell("echo never")

    with pytest.warns(RuntimeWarning, match=r"cs.shell\('echo never'\) was never awaited"):
        asyncio.run(main())
        gc.collect()


def test_a_pending_command_is_awaited_once() -> None:
    async def main() -> None:
        pending = shell("echo once")
        assert await pending == "once\n"
        with pytest.raises(RuntimeError, match="already awaited"):
            await pending

    asyncio.run(main())


def test_argument_errors_are_raised_at_the_call_even_in_async_code() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match=r"placeholder \{p\}"):
            shell("echo {p}")

    asyncio.run(main())


def test_a_sync_helper_called_through_to_thread_from_async_code_runs_at_once() -> None:
    def helper() -> str:
        out: str = shell("echo from-thread")  # no loop in this thread: runs now
        return out.strip()

    async def main() -> str:
        return await asyncio.to_thread(helper)

    assert asyncio.run(main()) == "from-thread"


def test_a_finished_result_is_a_plain_str_not_an_awaitable() -> None:
    # A runner awaits what a task returns when it is awaitable; a sync task may return
    # cs.shell(...) itself, which must then be sent as the string it is.
    done = shell("echo early")
    assert not hasattr(done, "__await__")
    assert json.dumps({"out": done}) == '{"out": "early\\n"}'


# ---------------------------------------------------------------------------------------
# Static types


TYPED_USE = """
import asyncio
from cascade._shell import shell

def sync_task() -> str:
    out: str = shell("echo {p}", p="x")
    return out + shell(["echo", "y"]) + str(shell("true", check=False).returncode)

async def async_task() -> str:
    out: str = await shell("echo {p}", p=["a", "b"], timeout="5s")
    return out + await shell(["echo"], cwd="/", env={"A": "b"})
"""


@pytest.mark.skipif(shutil.which("mypy") is None, reason="mypy is not installed")
def test_both_forms_type_check_strictly_and_a_list_with_values_does_not(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text(TYPED_USE)
    bad = tmp_path / "bad.py"
    bad.write_text('from cascade._shell import shell\nshell(["echo"], p="x")\n')
    env = dict(os.environ)
    if "site-packages" not in PACKAGE_ROOT.parts:  # mypy refuses site-packages there
        env["MYPYPATH"] = str(PACKAGE_ROOT)
    args = ["mypy", "--strict", "--no-incremental", "--python-executable", sys.executable]
    ok = subprocess.run([*args, str(good)], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    ko = subprocess.run([*args, str(bad)], env=env, capture_output=True, text=True)
    assert ko.returncode == 1 and "call-overload" in ko.stdout, ko.stdout + ko.stderr


# ---------------------------------------------------------------------------------------
# Import cost (a task process imports the package)


def _imports(code: str) -> set[str]:
    """The modules `code` imports beyond what the bare interpreter does."""

    def listed(*args: str) -> set[str]:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", *args],
            env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return {
            line.rsplit("|", 1)[1].strip()
            for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line
        }

    return listed("-c", code) - listed("-c", "pass")


def test_importing_shell_and_env_is_cheap_and_a_sync_command_does_not_import_asyncio() -> None:
    costly = {"asyncio", "typing", "inspect", "ast", "subprocess"}
    loaded = _imports("import cascade._shell, cascade._env")
    assert "cascade._shell" in loaded and "cascade._env" in loaded  # the listing is real
    assert not costly & loaded
    used = _imports("import cascade._shell as s; s.shell('true'); s.shell(['true'])")
    assert "subprocess" in used  # the listing is real
    assert not {"asyncio", "typing", "inspect"} & used
