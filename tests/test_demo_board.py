"""``make demo BOARD=1``: the demo prints the board's address first, serves it for the
whole run, and still converges (without BOARD=1 the board code is not even imported)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from gitutil import isolate_git

from controller.demo import ROLLOUT_EXAMPLES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


def demo_dir(tmp_path: Path) -> Path:
    """A copy of the sample release repository the demo seeds its origin from."""
    here = tmp_path / "project"
    here.mkdir()
    for name in ("relctl.yaml", "access.yaml"):
        shutil.copy2(ROOT / name, here / name)
    shutil.copytree(ROOT / "releases", here / "releases")
    shutil.copytree(ROOT / ROLLOUT_EXAMPLES, here / ROLLOUT_EXAMPLES)
    return here


@pytest.mark.slow
def test_demo_with_board_serves_the_board_during_the_whole_run(tmp_path: Path) -> None:
    env = {**os.environ, "BOARD": "1", "PYTHONPATH": str(ROOT)}
    demo = subprocess.Popen(
        [sys.executable, "-m", "controller.demo"],
        cwd=demo_dir(tmp_path),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    url = None
    for line in demo.stdout:
        lines.append(line)
        if "the release board: " in line:
            url = line.split("the release board: ", 1)[1].split()[0]
            break
    assert url is not None and url.startswith("http://127.0.0.1:"), "".join(lines)
    with urllib.request.urlopen(f"{url}api/releases", timeout=30) as response:
        assert json.load(response)["kind"] == "ReleaseBoard"
    rest = demo.stdout.read()
    assert demo.wait(timeout=150) == 0, "".join(lines) + rest
    assert re.search(r"All \d+ releases reached their intended state", rest), rest
