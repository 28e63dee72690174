"""Release of the monorepo: lint all -> test all -> build all -> publish.

    PYPI_TOKEN=... cascade run examples/python/release.py:release        # a dry run
    PYPI_TOKEN=... cascade run examples/python/release.py:release --input dry_run=false
    cascade run examples/python/release.py:release --job build_package   # no publish

`publish` reads `cs.Env("PYPI_TOKEN")`, which declares the secret: only that task gets
it, and the engine shows it as `***` in every log. A run that includes `publish` needs
the secret: without it, `cascade run` stops before anything runs ("secrets not set:
PYPI_TOKEN"); `--job build_package` runs lint, test and build alone, with no secret.
`dry_run` (a run parameter, default true) makes `publish` print the upload command
instead of running it; `--input dry_run=false` uploads (with twine).

The lint and test tasks are the PR check's (`pr_check.py`): tasks are plain Python
objects, imported and reused like any other.
"""

from __future__ import annotations

import os
import shlex
import zipfile

import cascade as cs
from pr_check import MONOREPO, all_packages, lint_package, package_files, test_package

DIST = "dist"  # relative to the working directory of the run


@cs.task
def build_package(package_name: str) -> str:
    """A zip of the package's files in `dist/`; returns its path."""
    os.makedirs(DIST, exist_ok=True)
    archive = os.path.join(DIST, f"{package_name}.zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in package_files(package_name):
            zf.write(os.path.join(MONOREPO, file), file)
    print(f"built {archive}")
    return archive


@cs.task(timeout="10m")
def publish(artifacts: list[str], dry_run: bool) -> str:
    """Uploads the artifacts with twine; with `dry_run`, prints the command instead."""
    token = cs.Env("PYPI_TOKEN")  # declares the secret; raises naming it when unset
    command = ["twine", "upload", "--non-interactive", *artifacts]
    # twine reads the credentials from its environment: argv would show in `ps`.
    credentials = {"TWINE_USERNAME": "__token__", "TWINE_PASSWORD": token}
    if dry_run:
        # The engine masks every declared secret in the log (`***`), so even this line,
        # which holds the token, is safe to print.
        shown = " ".join(f"{name}={value}" for name, value in credentials.items())
        print(f"dry run, would run: {shown} {shlex.join(command)}")
        return f"DRY_RUN {' '.join(sorted(artifacts))}"
    cs.shell(command, env=credentials)
    return f"PUBLISHED {' '.join(sorted(artifacts))}"


def release() -> cs.LazyResult[str]:
    packages = all_packages()  # known when the pipeline is built: a literal fan-out
    lint = lint_package.map(package_name=packages)
    tests = test_package.map(package_name=packages).after(lint)
    builds = build_package.map(package_name=packages).after(tests)
    return publish(artifacts=builds, dry_run=cs.Param("dry_run", default=True))


if __name__ == "__main__":
    print(cs.run(release()))
