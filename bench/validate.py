"""Benchmark of ``relctl validate`` over a large generated release repository, cold and warm.

Run by ``make bench`` (or ``.venv/bin/python bench/validate.py [-n N]``). Generates N
realistic Release manifests (~1 KB each, inline testers, every tenth mini program with tester
files) for 3 target apps in a temporary directory (committed to a git repository there), and
prints:

1. cold: the real ``relctl validate --repo`` once per repetition in a child process (wall
   time, median; files/s; the child's peak RSS through ``RUSAGE_CHILDREN``, which also covers
   its worker process). Target on a 2-core machine: 10,000 manifests in <= 1.5 s wall.
2. check-jsonschema on the same files in the same run, when it is installed (``pip install
   -e '.[bench]'``; ``make bench`` does): its wall time and the ratio to relctl's cold median
   (target: >= 20x). It checks the schema only; relctl also checks semantics.
3. warm (in one child process, ``load_repository`` on the commit's ``GitTree`` as the
   controller reads it): without a cache; with a :class:`ValidationCache` filling its file
   (every manifest a miss); a cold start from that file (``ValidationCache.open``, all hits);
   and the same cache warm in memory (the daemon between passes). Hits and misses are printed
   beside the times: they are the claim, the times are figures of this machine.

Wall times are noisy on a shared machine: run it on a quiet one for the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import compile_bytecode  # bench/ is on sys.path: the script's directory

APPS = {"gcash": "GCash", "dana": "DANA", "tng": "Touch 'n Go"}

CONFIG = """apiVersion: relctl/v1
kind: Config
platform: "sim:.relctl/platform.db"
targetApps:
  gcash: {name: GCash, testersMax: 50}
  dana: {name: DANA, testersMax: 40, grayscaleValues: [5, 10, 25, 50, 75]}
  tng: {name: "Touch 'n Go", environment: sandbox, testersMax: 30, grayscaleValues: [10, 30, 50]}
"""

MANIFEST = """# yaml-language-server: $schema=../../schemas/release.schema.json
apiVersion: relctl/v1
kind: Release
metadata:
  miniProgram: {mp}
  targetApp: {app}
spec:
  version: "{major}.{minor}.{patch}"
  basicInfo:
    name: Mini program {n}
    description: Order, pay and track deliveries from shop number {n} with your wallet.
    slogan: Shop {n}, one tap away
  configuration:
    pages: [pages/index/index, pages/cart/cart, pages/orders/orders]
    window: {{navigationBarTitleText: "Shop {n}", navigationBarBackgroundColor: "#1677ff"}}
    permissions: {{location: false, camera: false}}
    apiBaseUrl: https://api.example.com/{mp}/{app}
  compatibility:
    minPassRate: 95
    retest: 0
  pilot:
    testers: [{testers}]
{files}    complete: {complete}
  grayscale: {grayscale}
  cancel: false
  supersede: false
  paused: false
"""


def generate(root: Path, count: int) -> None:
    """Write relctl.yaml and ``count`` manifests under ``root``."""
    (root / "relctl.yaml").write_text(CONFIG)
    apps = list(APPS)
    grayscale = {"gcash": 20, "dana": 25, "tng": 30}
    for index in range(count):
        n, app = divmod(index, len(apps))
        app_id = apps[app]
        mp = f"mp{n:05d}"
        directory = root / "releases" / mp
        directory.mkdir(parents=True, exist_ok=True)
        testers = ", ".join(f'"2088{n % 10000:04d}{app}{k:07d}"' for k in range(4))
        files = ""
        if n % 10 == 0:
            (directory / "testers").mkdir(exist_ok=True)
            tester_file = directory / "testers" / f"{app_id}.csv"
            rows = ["userId,name"] + [f"2088{n % 10000:04d}9{k:07d},Tester {k}" for k in range(20)]
            tester_file.write_text("\n".join(rows) + "\n")
            files = f"    testersFiles: [testers/{app_id}.csv]\n"
        (directory / f"{app_id}.yaml").write_text(
            MANIFEST.format(
                mp=mp,
                app=app_id,
                n=n,
                major=1 + n % 3,
                minor=n % 20,
                patch=index % 7,
                testers=testers,
                files=files,
                complete=str(n % 2 == 0).lower(),
                grayscale=grayscale[app_id] if n % 4 == 0 else 0,
            )
        )


def commit(root: Path) -> None:
    """Make ``root`` a git repository with everything in one commit (for the warm figures)."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=bench", "-c", "user.email=bench@relctl.invalid", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", *args], cwd=root, check=True, env=env)


def run_once(relctl: str, root: Path) -> tuple[float, int, str]:
    """(wall seconds, exit code, last output line) of one ``relctl validate`` run."""
    started = time.perf_counter()
    done = subprocess.run(
        [relctl, "validate", "--repo", str(root)], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    tail = (done.stdout.strip().splitlines() or [done.stderr.strip()])[-1]
    return wall, done.returncode, tail


def check_jsonschema(root: Path) -> tuple[float, int, str] | None:
    """(wall seconds, exit code, last line) of check-jsonschema on every manifest of ``root``
    against relctl's Release schema, or None when it is not installed."""
    tool = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    tool = tool or shutil.which("check-jsonschema")
    if tool is None:
        return None
    schema = Path(__file__).resolve().parent.parent / "schemas" / "release.schema.json"
    manifests = sorted(str(p) for p in (root / "releases").glob("*/*.yaml"))
    started = time.perf_counter()
    done = subprocess.run(
        [tool, "--schemafile", str(schema), *manifests],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    tail = (done.stdout.strip().splitlines() or [done.stderr.strip() or "?"])[-1]
    return wall, done.returncode, tail


#: Runs in a child process: load_repository on the commit's GitTree, without and with a cache.
WARM = """
import json, sys, time
from pathlib import Path
from controller.gitops import GitTree, repository
from controller.manifests import ValidationCache, load_repository

root, path = Path(sys.argv[1]), Path(sys.argv[2])
out = {}
with repository(root) as repo:
    tree = GitTree(repo, "HEAD")

    def timed(name, cache):
        started = time.perf_counter()
        result = load_repository(tree, cache=cache)
        wall = time.perf_counter() - started
        stats = cache.stats if cache is not None else None
        out[name] = {
            "wall": wall,
            "hits": stats.hits if stats else None,
            "misses": stats.misses if stats else None,
            "releases": len(result.releases),
        }
        return result

    plain = timed("no cache", None)
    filling = ValidationCache.open(path)
    assert timed("cache filling", filling) == plain
    started = time.perf_counter()
    filling.save()
    out["save"] = {"wall": time.perf_counter() - started, "bytes": path.stat().st_size}
    started = time.perf_counter()
    cold = ValidationCache.open(path)
    out["open"] = {"wall": time.perf_counter() - started}
    assert timed("cold start from file", cold) == plain
    assert timed("warm in memory", cold) == plain
print(json.dumps(out))
"""


def warm(root: Path) -> dict[str, dict[str, float | int | None]]:
    """The warm figures, measured in a child process (see :data:`WARM`)."""
    done = subprocess.run(
        [sys.executable, "-c", WARM, str(root), str(root.parent / "validation-cache")],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"warm measurement failed: {done.stderr.strip()[-2000:]}")
    figures: dict[str, dict[str, float | int | None]] = json.loads(done.stdout)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=10_000, help="manifests (10000)")
    parser.add_argument("-r", "--repeat", type=int, default=5, help="runs; median shown (5)")
    parser.add_argument(
        "--no-check-jsonschema", action="store_true", help="skip the check-jsonschema run"
    )
    args = parser.parse_args()
    relctl = shutil.which("relctl", path=str(Path(sys.executable).parent)) or "relctl"
    print(compile_bytecode())
    with tempfile.TemporaryDirectory(prefix="relctl-bench-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        generate(root, args.count)
        commit(root)
        size = sum(p.stat().st_size for p in root.rglob("*.yaml"))
        print(f"{args.count} manifests, {size / args.count:.0f} bytes each on average")
        walls = []
        for _ in range(args.repeat):
            wall, code, tail = run_once(relctl, root)
            walls.append(wall)
            if code != 0:
                print(f"relctl validate failed (exit {code}): {tail}")
                return 1
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        median = statistics.median(walls)
        print(f"relctl validate: {tail}")
        print(
            f"cold wall {median:.2f} s (median of {len(walls)}; runs: "
            f"{', '.join(f'{w:.2f}' for w in walls)}); target <= 1.5 s for 10,000"
        )
        print(f"files/s   {args.count / median:,.0f}")
        print(f"peak RSS  {peak_kib / 1024:.0f} MB (largest child process)")
        other = None if args.no_check_jsonschema else check_jsonschema(root)
        if other is None:
            print("check-jsonschema: not run (pip install -e '.[bench]' to compare)")
        else:
            wall, code, tail = other
            print(f"check-jsonschema: {tail} (exit {code})")
            print(
                f"check-jsonschema wall {wall:.2f} s: relctl validate is {wall / median:.1f}x "
                "faster (target >= 20x)"
            )
        print("warm, in process (load_repository on the commit's GitTree):")
        for name, figure in warm(root).items():
            counts = ""
            if figure.get("hits") is not None:
                counts = f"  hits {figure['hits']:,}  misses {figure['misses']:,}"
            if "bytes" in figure:
                counts = f"  {int(figure['bytes'] or 0) / 1e6:.1f} MB"
            print(f"  {name:22s} {float(figure['wall'] or 0):6.2f} s{counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
