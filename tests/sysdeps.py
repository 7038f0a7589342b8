"""Tests that need a program from a system (Debian) package: skip with a clear reason, or fail.

``.ci/run`` installs every package listed in ``.ci/apt-packages.txt`` and sets
``RELCTL_REQUIRE_SYSTEM_PACKAGES=1``: there a missing program fails the test instead of
skipping it, so CI always runs everything. On a developer's machine the test is skipped and
says which package to install.
"""

from __future__ import annotations

import os
import shutil

import pytest

#: Set by .ci/run: a missing system program is a failure, not a skip.
REQUIRE = os.environ.get("RELCTL_REQUIRE_SYSTEM_PACKAGES") == "1"


def require_program(name: str, package: str) -> str:
    """The path of program ``name``; skip (or, under ``.ci/run``, fail) when it is missing."""
    found = shutil.which(name)
    if found is not None:
        return found
    message = (
        f"{name} is not installed: apt-get install {package} "
        "(.ci/run installs it from .ci/apt-packages.txt)"
    )
    if REQUIRE:
        pytest.fail(message)
    pytest.skip(message)
