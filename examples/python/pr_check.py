"""PR check of a monorepo: lint and test only the packages a change touched.

    cascade run examples/python/pr_check.py:pr_check                     # base: HEAD~1
    cascade run examples/python/pr_check.py:pr_check --input base=origin/main
    python examples/python/pr_check.py                                   # the same, via cs.run

The graph: `detect_changed_packages` (git) -> `lint_package` per changed package ->
`test_package` per changed package, after every lint -> `summary`, which receives the
list of the test results (fan-in). Each task is its own process (`python3 -m
cascade.runner`); the lists and strings between them travel as JSON.

The packages live in `monorepo/packages/` next to this file: paths are taken from this
file's location, so the pipeline runs from any working directory.
"""

from __future__ import annotations

import os
import shutil
import sys

import cascade as cs

MONOREPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monorepo")
PACKAGES_DIR = os.path.join(MONOREPO, "packages")


def all_packages() -> list[str]:
    """Every package of the monorepo (a folder of `packages/`), sorted."""
    return sorted(
        name
        for name in os.listdir(PACKAGES_DIR)
        if os.path.isdir(os.path.join(PACKAGES_DIR, name)) and not name.startswith(".")
    )


def packages_touched(files: list[str], packages: list[str]) -> list[str]:
    """The packages (sorted, unique) that the changed `files` (paths relative to the
    monorepo, as `git diff --relative` prints them) fall under."""
    touched = set()
    for line in files:
        parts = line.strip().split("/")
        if len(parts) >= 3 and parts[0] == "packages" and parts[1] in packages:
            touched.add(parts[1])
    return sorted(touched)


@cs.task
async def detect_changed_packages(base: str) -> list[str]:
    """The packages changed between `base` and HEAD; every package when that cannot be
    known (not a git repository, `base` does not exist, git missing)."""
    packages = all_packages()
    try:
        # A list runs without a shell: `base` is one argv word, whatever it holds.
        out = await cs.shell(
            ["git", "diff", "--name-only", "--relative", base, "HEAD"], cwd=MONOREPO
        )
    except cs.ShellError as e:
        reason = e.stderr_tail.strip().splitlines()[-1:] or [f"exit code {e.returncode}"]
        print(f"cannot diff against {base!r} ({reason[0]}); checking every package")
        return packages
    changed = packages_touched(out.splitlines(), packages)
    print(f"changed since {base}: {', '.join(changed) or 'no package'}")
    return changed


def package_files(package_name: str) -> list[str]:
    """The Python files of a package, sorted (paths relative to the monorepo)."""
    found = []
    root = os.path.join(PACKAGES_DIR, package_name)
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        found += [
            os.path.relpath(os.path.join(folder, f), MONOREPO) for f in files if f.endswith(".py")
        ]
    return sorted(found)


@cs.task(timeout="5m")
def lint_package(package_name: str) -> str:
    """`ruff check` when ruff is installed, else a byte-compile of every file (which a
    clean virtual environment can always do)."""
    files = package_files(package_name)
    if shutil.which("ruff"):
        # The string form runs with `sh -c`; {files} becomes shell-quoted words.
        cs.shell("ruff check --no-cache {files}", files=files, cwd=MONOREPO)
    else:
        cs.shell([sys.executable, "-m", "py_compile", *files], cwd=MONOREPO)
    print(f"{package_name}: {len(files)} files lint clean")
    return f"LINT_OK_{package_name}"


@cs.task(retry=cs.Retry(limit=1, backoff="1s"), timeout="10m")
async def test_package(package_name: str) -> str:
    """The package's unit tests (standard-library unittest: no test runner to install)."""
    root = f"packages/{package_name}"
    await cs.shell(
        [sys.executable, "-m", "unittest", "discover", "-s", root, "-t", root], cwd=MONOREPO
    )
    return f"TEST_OK_{package_name}"


@cs.task
def summary(results: list[str]) -> str:
    """The marker task at the end: one line that says what was checked."""
    if not results:
        return "PR check: no package changed"
    return f"PR check passed: {', '.join(results)}"


def pr_check() -> cs.LazyResult[str]:
    changed = detect_changed_packages(base=cs.Param("base", default="HEAD~1"))
    lint = lint_package.map(package_name=changed)  # one job per changed package
    tests = test_package.map(package_name=changed).after(lint)  # ordering, no data
    return summary(tests)  # fan-in: the list of the test results, in package order


if __name__ == "__main__":
    print(cs.run(pr_check()))
