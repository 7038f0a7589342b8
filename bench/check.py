"""Benchmark of ``relctl check --base`` on a large repository where a pull request touches one
manifest.

Run by ``make bench`` (or ``.venv/bin/python bench/check.py [-n N]``). Generates N manifests
as ``bench/validate.py`` does, plus an ``access.yaml`` whose master makes every commit, on
``main``; then a branch ``pr`` whose one commit raises the grayscale of one manifest. It runs
the real CLI in child processes and prints, for each run, the wall time and how many
manifests of the head were validated anew (the others came from the validation cache that
``relctl check`` keeps in ``.git/relctl/``):

1. cold: no cache yet (every manifest is validated; the cache is written);
2. warm, same head: the cache has every blob;
3. warm, a new head: one more commit on ``pr`` touches another manifest (one new blob);
   the case of a pull request's next push (each repetition pushes another). Target:
   <= 0.5 s.

Warm figures are medians of ``--repeat`` runs.

Then the same three in process (``check_change``, after the imports) and the import time of
the CLI alone (``python -c "import controller.cli"``), which every ``relctl`` command pays.
Wall times are noisy on a shared machine; the revalidated counts are the claim.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import compile_bytecode  # bench/ is on sys.path: the script's directory
from validate import generate

ACCESS = """apiVersion: relctl/v1
kind: Access
members:
  - {email: bench@relctl.invalid, name: Bench, role: master}
"""
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@relctl.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@relctl.invalid",
}


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, env=GIT_ENV)


def touch(root: Path, file: str) -> None:
    """Raise the grayscale of ``file`` (0 -> 50, a value every generated app offers) and
    commit it."""
    path = root / file
    text = path.read_text()
    path.write_text(text.replace("grayscale: 0\n", "grayscale: 50\n", 1))
    git(root, "commit", "-qam", f"raise {file}")


def cli_run(relctl: str, root: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [relctl, "check", "--repo", str(root), "--base", "main", "--head", "pr"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    tail = (done.stdout.strip().splitlines() or [done.stderr.strip()])[-1]
    if done.returncode != 0:
        raise SystemExit(f"relctl check failed (exit {done.returncode}): {tail}")
    return wall, tail


IN_PROCESS = """
import json, sys, time
from pathlib import Path
from controller.check import check_change
started = time.perf_counter()
result = check_change(Path(sys.argv[1]), "main", "pr")
print(json.dumps({"wall": time.perf_counter() - started, "revalidated": result.revalidated,
                  "ok": result.ok}))
"""


def in_process(root: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(root)], capture_output=True, text=True, check=True
    )
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def import_time() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import controller.cli"], check=True)
    return time.perf_counter() - started


def cache_file(root: Path) -> Path:
    return root / ".git" / "relctl" / "validation-cache"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=10_000, help="manifests (10000)")
    parser.add_argument("-r", "--repeat", type=int, default=5, help="warm runs; median (5)")
    args = parser.parse_args()
    relctl = str(Path(sys.executable).parent / "relctl")
    print(compile_bytecode())
    with tempfile.TemporaryDirectory(prefix="relctl-bench-check-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        generate(root, args.count)
        (root / "access.yaml").write_text(ACCESS)
        git(root, "init", "-q", "-b", "main")
        git(root, "add", "-A")
        git(root, "commit", "-qm", "releases")
        git(root, "checkout", "-q", "-b", "pr")
        touch(root, "releases/mp00001/gcash.yaml")
        print(f"{args.count} manifests; the pull request touches one")

        for label in ("CLI", "in process"):
            cache_file(root).unlink(missing_ok=True)
            git(root, "reset", "-q", "--hard", "main")
            touch(root, "releases/mp00001/gcash.yaml")
            rows = []
            # Mini programs whose generated gcash manifest has grayscale 0 (touch raises it).
            untouched = (f"releases/mp{n:05d}/gcash.yaml" for n in range(2, 10**5) if n % 4)
            for name in ("cold (no cache)", "warm, same head", "warm, a new head"):
                repeat = 1 if name.startswith("cold") else args.repeat
                walls, revalidated = [], "?"
                for _ in range(repeat):
                    if name == "warm, a new head":  # each run: one more commit on pr
                        touch(root, next(untouched))
                    if label == "CLI":
                        wall, _tail = cli_run(relctl, root)
                        walls.append(wall)
                    else:
                        figures = in_process(root)
                        walls.append(figures["wall"])
                        revalidated = f"{int(figures['revalidated']):,}"
                rows.append((name, statistics.median(walls), revalidated))
            print(f"{label}:")
            for name, wall, revalidated in rows:
                extra = f"  revalidated {revalidated}" if label != "CLI" else ""
                print(f"  {name:18s} {wall:6.2f} s{extra}")
        size = cache_file(root).stat().st_size
        print(f"cache file {size / 1e6:.1f} MB ({cache_file(root).relative_to(root)})")
        print(f"import controller.cli alone: {import_time():.2f} s (every relctl command)")
        print("target: warm, a new head <= 0.5 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
