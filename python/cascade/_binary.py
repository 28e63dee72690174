"""Finding the `cascade` binary: `CASCADE_BIN`, then the one the wheel installed next to
this interpreter's scripts, then `PATH`."""

from __future__ import annotations

import os
import shutil
import sysconfig


class BinaryNotFound(FileNotFoundError):
    """No `cascade` binary could be found."""


def find_binary() -> str:
    """The path of the `cascade` binary to run."""
    configured = os.environ.get("CASCADE_BIN")
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise BinaryNotFound(
                f"CASCADE_BIN is {configured!r}, which is not an executable file; "
                "point it at a `cascade` binary or unset it to use the installed one"
            )
        return configured
    name = "cascade.exe" if os.name == "nt" else "cascade"
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidate = os.path.join(scripts, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return found
    raise BinaryNotFound(
        "cannot find the `cascade` binary: it was not in this environment's scripts "
        f"({scripts}) nor on PATH; install the package with `pip install .` at the "
        "repository root (the wheel holds the binary), or set CASCADE_BIN"
    )
