"""The front door, as a user meets it: a built wheel installed in a fresh virtualenv, and the
pre-commit hook run by the real ``pre-commit``.

Both build relctl from a copy of this checkout (committed files and untracked ones git does not
ignore, so uncommitted work is tested too) and install it with its dependencies from the
package index, in temp directories outside the checkout: nothing of the development
virtualenv or the source tree can leak in. They need the package index (PyPI); a failure
to reach it shows in the pip output of the failure message.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gitutil import git, identity, isolate_git

PROJECT = Path(__file__).parent.parent
EXAMPLES = PROJECT / "examples"
#: pip's cache of this user, found before ``isolate_git`` moves HOME: the installs download
#: only what is not cached yet.
PIP_CACHE_DIR = os.environ.get("PIP_CACHE_DIR") or str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip"
)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would let the development virtualenv leak in."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSAFEPATH"}
    }
    return {**env, "PIP_CACHE_DIR": PIP_CACHE_DIR, **extra}


def run(*args: str | Path, cwd: Path, timeout: float = 300, **env: str) -> tuple[int, str]:
    """Run a command; (exit status, stdout and stderr interleaved)."""
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stdout


def copy_checkout(dest: Path) -> Path:
    """The files of this checkout git would commit (tracked and not ignored), in ``dest``."""
    listed = git(PROJECT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for relpath in sorted(set(filter(None, listed.split("\0")))):
        source = PROJECT / relpath
        if source.is_file():  # a tracked file may be deleted in the work tree
            (dest / relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / relpath)
    return dest


def make_release_repo(root: Path) -> Path:
    """A release repository from ``examples/``: its relctl.yaml and access.yaml at the root,
    the pilot example as ``releases/shop/gcash.yaml`` with its tester files, and a copy of
    ``examples/`` itself (validated by path)."""
    shutil.copytree(EXAMPLES, root / "examples")
    shutil.copy(EXAMPLES / "relctl.yaml", root / "relctl.yaml")
    shutil.copy(EXAMPLES / "access.yaml", root / "access.yaml")
    (root / "releases/shop").mkdir(parents=True)
    shutil.copy(EXAMPLES / "pilot.yaml", root / "releases/shop/gcash.yaml")
    shutil.copytree(EXAMPLES / "testers", root / "releases/shop/testers")
    return root


def break_min_pass_rate(root: Path) -> str:
    """Set an out-of-range minPassRate in releases/shop/gcash.yaml; the located error line
    ``relctl validate`` must print for it."""
    manifest = root / "releases/shop/gcash.yaml"
    lines = manifest.read_text().splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if re.fullmatch(r"\s+minPassRate: \d+\n", line):
            lines[number - 1] = re.sub(r"\d+", "195", line)
            column = line.index("minPassRate: ") + len("minPassRate: ") + 1
            manifest.write_text("".join(lines))
            return (
                f"releases/shop/gcash.yaml:{number}:{column}: error: "
                "spec.compatibility.minPassRate: 195 is greater than the maximum of 100 [schema]"
            )
    raise AssertionError(f"no minPassRate line in {manifest}")


def test_a_wheel_installed_in_a_fresh_virtualenv_validates_a_release_repository(
    tmp_path: Path,
) -> None:
    source = copy_checkout(tmp_path / "source")
    status, out = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", source,
        cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, out
    (wheel,) = (tmp_path / "dist").glob("relctl-*.whl")
    venv = tmp_path / "venv"
    status, out = run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    assert status == 0, out
    status, out = run(venv / "bin/python", "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    assert status == 0, out

    repo = make_release_repo(tmp_path / "repo")
    relctl = venv / "bin/relctl"
    # the package comes from the wheel, not from this checkout
    status, out = run(venv / "bin/python", "-c", "import controller; print(controller.__file__)",
                      cwd=repo)  # fmt: skip
    assert status == 0 and Path(out.strip()).is_relative_to(venv), out

    status, out = run(relctl, "validate", cwd=repo)
    assert (status, out) == (0, "3 files valid\n")
    examples = sorted(str(p.relative_to(repo)) for p in (repo / "examples").glob("*.yaml"))
    status, out = run(relctl, "validate", *examples, cwd=repo)
    assert (status, out) == (0, f"{len(examples) + 1} files valid\n")  # + relctl.yaml

    error = break_min_pass_rate(repo)
    status, out = run(relctl, "validate", cwd=repo)
    assert (status, out.splitlines()) == (1, [error, "1 error in 3 files"])


def test_the_pre_commit_hook_passes_a_valid_repository_and_fails_with_the_located_error(
    tmp_path: Path,
) -> None:
    if importlib.util.find_spec("pre_commit") is None:
        pytest.skip("pre-commit is not installed here: pip install -e '.[test]'")
    hooks = copy_checkout(tmp_path / "hooks")  # try-repo installs the hook from a commit
    git(hooks, "init", "--quiet")
    git(hooks, "add", "--all")
    git(hooks, "commit", "--quiet", "-m", "relctl as it is on disk", env=identity("T", "t@x"))
    repo = make_release_repo(tmp_path / "repo")
    git(repo, "init", "--quiet")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "Releases", env=identity("Maria", "maria@x"))

    def try_repo() -> tuple[int, str]:
        return run(
            sys.executable, "-m", "pre_commit", "try-repo", hooks, "relctl-validate",
            "--all-files", "--color=never",
            cwd=repo, PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
        )  # fmt: skip

    status, out = try_repo()
    assert status == 0, out
    assert re.search(r"^relctl validate\.+Passed$", out, re.MULTILINE), out

    error = break_min_pass_rate(repo)
    git(repo, "commit", "--quiet", "--all", "-m", "Raise the gate", env=identity("Maria", "m@x"))
    status, out = try_repo()
    assert status == 1, out
    assert re.search(r"^relctl validate\.+Failed$", out, re.MULTILINE), out
    assert error in out.splitlines(), out
