"""The README's by-hand walk through the controller ("Running the controller"), run for real.

Every ``sh`` block of that section runs, in order, in one bash from this checkout (a
one-commit copy of it if it is a shallow clone), as a newcomer would paste them: a bare
remote, the simulator, the daemon in the background, the reviewer's approval, a first edit
committed as a member of access.yaml and pushed after ``git pull --rebase``, the status, and
stopping the daemon. What a person does by looking is done by the test: it waits until the
platform shows the application under review before the approval block, and until
``relctl status`` shows the new grayscale before the last block. The only other changes:
``/tmp/`` is this test's temp directory, ``.venv/bin`` is this interpreter's, and the
daemon's interval is 0.5 s instead of 5 s.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gitutil import git, identity, isolate_git, process_group

PROJECT = Path(__file__).parent.parent
README = PROJECT / "README.md"

pytestmark = pytest.mark.slow

#: ``wait_for PATTERN COMMAND...``: run COMMAND until its output matches PATTERN (60 s at most).
WAIT_FOR = """\
wait_for() {
  local pattern=$1; shift
  for _ in $(seq 120); do
    grep -Eq -- "$pattern" <<<"$("$@" 2>&1)" && return 0
    sleep 0.5
  done
  echo "README test: timed out waiting for /$pattern/ in the output of: $*" >&2
  "$@" >&2
  return 1
}
"""


@pytest.fixture(autouse=True)
def _git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


def by_hand_blocks(readme: str) -> list[str]:
    """The ``sh`` blocks of the section "Running the controller", up to its first subsection."""
    section = readme.split("\n## Running the controller\n", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def checkout_to_run_from(tmp_path: Path) -> Path:
    """This checkout; or, when it is a shallow clone (git refuses to push one into a new
    remote), a one-commit repository with the files of its HEAD, committed by a master."""
    if git(PROJECT, "rev-parse", "--is-shallow-repository") != "true":
        return PROJECT
    standin = tmp_path / "checkout"
    standin.mkdir()
    archive = subprocess.run(
        ["git", "archive", "HEAD"], cwd=PROJECT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(standin)], input=archive, check=True)
    git(standin, "init", "--quiet", "--initial-branch=main")
    git(standin, "add", "--all")
    git(standin, "commit", "--quiet", "-m", "Releases",
        env=identity("Maria Santos", "maria.santos@example.com"))  # fmt: skip
    return standin


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the README's by-hand flow should contain {old!r} once"
    return text.replace(old, new)


def test_the_readme_walks_a_newcomer_through_a_first_edit(tmp_path: Path) -> None:
    work = tmp_path / "t"
    work.mkdir()
    readme = "\n#---\n".join(by_hand_blocks(README.read_text()))
    assert "/tmp/" in readme, "the README's by-hand flow should work under /tmp/"
    readme = readme.replace("/tmp/", f"{work}/")
    readme = replace_once(readme, "$PWD/.venv/bin", shlex.quote(str(Path(sys.executable).parent)))
    readme = replace_once(readme, "--interval 5 ", "--interval 0.5 --jitter 0 ")
    blocks = readme.split("\n#---\n")
    assert len(blocks) >= 2, "no sh blocks found under '## Running the controller'"
    script = [WAIT_FOR]
    for block in blocks:
        if " review R-" in block:  # the reviewer approves once the application is under review
            script.append(f"wait_for 'R-000002 .*gcash .*UNDER_REVIEW' "
                          f"relctl platform --db {work}/platform.db releases")  # fmt: skip
        if "kill %1" in block:  # the newcomer looks again once the edit took effect
            script.append(f"wait_for '^shop +gcash +1\\.4\\.0 +Grayscale +20%' "
                          f"relctl status --remote {work}/releases.git")  # fmt: skip
        script.append(block)
    text = "\n".join(script)

    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    env.pop("VIRTUAL_ENV", None)
    shell = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", text],
        cwd=checkout_to_run_from(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the daemon started with & is in this group
    )
    try:
        out, _ = shell.communicate(timeout=180)
        assert shell.returncode == 0, out
        # the bare remote's HEAD is main, so the newcomer's clone checked main out
        assert git(work / "releases.git", "symbolic-ref", "HEAD") == "refs/heads/main"
        assert git(work / "my-releases", "branch", "--show-current") == "main"
        # the edit went in as Budi's commit, and the controller acted on it
        authors = git(work / "releases.git", "log", "--format=%ae", "main")
        assert "budi.hartono@example.com" in authors.splitlines()
        assert re.search(r"^shop +gcash +1\.4\.0 +Grayscale +20%", out, re.MULTILINE), out
        # `kill %1` stops the daemon: it finishes its pass and says so
        deadline = time.monotonic() + 60
        while process_group(shell.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        log = (work / "relctl-run.log").read_text()
        assert re.search(r"relctl controller: stopped after \d+ pass\(es\)\n\Z", log), log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
