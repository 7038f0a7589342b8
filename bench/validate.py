"""Benchmark of ``relctl validate`` over a large generated release repository.

Run by ``make bench`` (or ``.venv/bin/python bench/validate.py [-n N]``). Generates N
realistic Release manifests (~1 KB each, inline testers, every tenth mini program with tester
files) for 3 target apps in a temporary directory, runs the real ``relctl validate --repo``
once per repetition in a child process, and prints wall time, files/s and the child's peak
RSS (``resource.getrusage(RUSAGE_CHILDREN)``, which also covers its worker process).

Target on a 2-core machine: 10,000 manifests in <= 3 s wall, peak RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def run_once(relctl: str, root: Path) -> tuple[float, int, str]:
    """(wall seconds, exit code, last output line) of one ``relctl validate`` run."""
    started = time.perf_counter()
    done = subprocess.run(
        [relctl, "validate", "--repo", str(root)], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    tail = (done.stdout.strip().splitlines() or [done.stderr.strip()])[-1]
    return wall, done.returncode, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=10_000, help="manifests (10000)")
    parser.add_argument("-r", "--repeat", type=int, default=3, help="runs; median shown (3)")
    args = parser.parse_args()
    relctl = shutil.which("relctl", path=str(Path(sys.executable).parent)) or "relctl"
    with tempfile.TemporaryDirectory(prefix="relctl-bench-") as tmp:
        root = Path(tmp)
        generate(root, args.count)
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
        f"wall      {median:.2f} s (median of {len(walls)}; runs: "
        f"{', '.join(f'{w:.2f}' for w in walls)})"
    )
    print(f"files/s   {args.count / median:,.0f}")
    print(f"peak RSS  {peak_kib / 1024:.0f} MB (largest child process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
