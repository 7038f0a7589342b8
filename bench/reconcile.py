"""Benchmark of reconcile passes (``relctl run``) over a large release repository.

Run by ``make bench`` (or ``.venv/bin/python bench/reconcile.py [--releases N]``). Everything
is local and real except the clock: a bare git remote in a temporary directory, the platform
simulator (SQLite) with a manual clock, and a :class:`controller.daemon.Controller` in this
process, as the daemon runs it (its ``PassCache`` stays warm between passes).

Setup (timed separately, progress on stderr): ``--apps`` target apps (10) x mini programs
make ``--releases`` (10,000) manifests, each with basic info and a configuration, and an
access.yaml (one master, one owner per ten mini programs) that the controller enforces; the
simulator has every version uploaded and every app with zero build/test time, automatic
review after 0 s and no pilot. Setup passes then drive every release to its settled state,
Grayscale 10% (``Ready=True``, reason GrayscaleReached): create, update basic info, push
configuration, compatibility test, apply (approved at once), set grayscale: one step per
release per pass, one commit per pass, until a pass makes no commit.

Then it measures, with the clock moved 30 s before each pass (a daemon tick):

1. Unchanged pass, warm cache (``--repeat`` times, median shown): nothing changed since the
   last pass. Target: at most 1 s beyond the git fetch, no commit, no platform mutation.
   ``fetch`` is ``git fetch`` alone; ``sync`` adds the hard reset and ``git clean`` of the
   work tree; ``beyond fetch`` = pass wall - fetch.
2. Resync pass (information): the clock moved past ``PassCache.resync`` (5 min), so the
   daemon observes every settled release on the platform again. Happens once per resync
   period in a long-running daemon.
3. Unchanged pass, cold cache (information): a fresh Controller (a restarted daemon or
   ``relctl reconcile``): parses every manifest and status file and observes every release.
   Must not commit either.
4. Step pass: a person's commit sets ``grayscale: 100`` on ``--step-releases`` (1,000)
   manifests; one pass of the warm controller fully releases each of them (one step each,
   Grayscale -> Released) among the other, settled releases. Target: exactly one commit.
   Peak RSS is the process's ``ru_maxrss`` (lifetime, includes setup) and, when Linux lets
   the high-water mark be reset (``/proc/self/clear_refs``), the peak during that pass.

Exit status: 0 when the invariants hold (no commit and no platform mutation on unchanged
passes, exactly one commit on the step pass), whether or not the time targets are met;
1 when an invariant is violated or a pass fails. ``--profile warm`` (or resync, cold, step)
prints the cProfile of that pass, top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from controller.daemon import Controller
from controller.gitops import Workspace
from controller.platform.sim import Simulator
from controller.reconcile import PassResult, ReleaseResult
from controller.trust import TrustSettings

#: The simulator's manual clock starts here (fixed: messages show times of day).
START = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
#: Seconds the clock moves before each measured pass (a daemon tick).
TICK = 30.0
#: Grayscale every release settles at, and what the step pass asks for.
SETTLED_GRAYSCALE = 10
STEP_GRAYSCALE = 100
#: Targets of the issue (informational: printed, never asserted).
UNCHANGED_TARGET_S = 1.0
PROFILES = ("warm", "resync", "cold", "step")

MANIFEST = """\
# yaml-language-server: $schema=../../schemas/release.schema.json
apiVersion: relctl/v1
kind: Release
metadata:
  miniProgram: {mp}
  targetApp: {app}
spec:
  version: "{version}"
  basicInfo:
    name: Shop {n}
    description: Order, pay and track deliveries from shop number {n} with your wallet.
    slogan: Shop {n}, one tap away
  configuration:
    pages: [pages/index/index, pages/cart/cart, pages/orders/orders]
    window: {{navigationBarTitleText: "Shop {n}"}}
    apiBaseUrl: https://api.example.com/{mp}/{app}
  compatibility:
    minPassRate: 95
    retest: 0
  pilot:
    testers: ["2088000000000001", "2088000000000002"]
    complete: false
  grayscale: {grayscale}
  cancel: false
  supersede: false
  paused: false
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# git, isolated from the machine's configuration
# --------------------------------------------------------------------------------------------


def isolate_git(home: Path) -> None:
    """Make every git call (ours and the controller's) ignore global and system config."""
    for name in list(os.environ):
        if name.startswith("GIT_") and not name.startswith("GIT_PYTHON"):
            del os.environ[name]
    home.mkdir(parents=True, exist_ok=True)
    config = home / ".gitconfig"
    config.write_text("[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n")
    os.environ["GIT_CONFIG_GLOBAL"] = str(config)
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    os.environ["GIT_TERMINAL_PROMPT"] = "0"


PERSON = {
    "GIT_AUTHOR_NAME": "Maria",
    "GIT_AUTHOR_EMAIL": "maria@example.com",
    "GIT_COMMITTER_NAME": "Maria",
    "GIT_COMMITTER_EMAIL": "maria@example.com",
}


def git(cwd: Path, *args: str, data: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=data,
        env={**os.environ, **PERSON},
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {done.stderr.decode().strip()}")
    return done.stdout.decode().strip()


def make_remote(tmp: Path, files: Mapping[str, str]) -> Path:
    """A bare repository with one commit of ``files`` on main (written by fast-import)."""
    bare = tmp / "origin.git"
    git(tmp, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git(bare, "config", "gc.auto", "0")
    stream = bytearray(
        f"commit refs/heads/main\ncommitter Maria <maria@example.com> {int(time.time())} +0000\n"
        "data 5\nSeed\n".encode()
    )
    for relpath, text in sorted(files.items()):
        data = text.encode()
        stream += f"M 100644 inline {relpath}\ndata {len(data)}\n".encode() + data + b"\n"
    git(bare, "fast-import", "--quiet", data=bytes(stream))
    return bare


def remote_head(bare: Path) -> str:
    return git(bare, "rev-parse", "refs/heads/main")


def remote_commits(bare: Path) -> int:
    return int(git(bare, "rev-list", "--count", "refs/heads/main"))


# --------------------------------------------------------------------------------------------
# the world
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Which (mini program, target app) pairs exist, and their versions."""

    releases: int
    apps: int

    @property
    def app_ids(self) -> list[str]:
        return [f"app{j:02d}" for j in range(self.apps)]

    @property
    def mini_programs(self) -> int:
        return -(-self.releases // self.apps)

    def pairs(self) -> Iterator[tuple[int, str, str]]:
        """(index, mini program, target app) for every release."""
        for index in range(self.releases):
            n, j = divmod(index, self.apps)
            yield index, f"mp{n:05d}", f"app{j:02d}"

    @staticmethod
    def version(mp: str) -> str:
        n = int(mp[2:])
        return f"{1 + n % 3}.{n % 10}.0"

    def manifest(self, mp: str, app: str, grayscale: int) -> str:
        return MANIFEST.format(
            mp=mp, app=app, n=int(mp[2:]), version=self.version(mp), grayscale=grayscale
        )

    def access(self) -> str:
        """access.yaml: Maria (who commits) is the master; one owner per ten mini programs, so
        the controller enforces access on every release like in a real repository."""
        lines = ["apiVersion: relctl/v1", "kind: Access", "members:"]
        lines.append("  - {email: maria@example.com, name: Maria, role: master}")
        for team in range(0, self.mini_programs, 10):
            owned = ", ".join(f"mp{n:05d}" for n in range(team, min(team + 10, self.mini_programs)))
            lines.append(
                f"  - {{email: owner{team:05d}@example.com, name: Owner {team}, role: owner, "
                f"miniPrograms: [{owned}]}}"
            )
        return "\n".join(lines) + "\n"

    def config(self) -> str:
        lines = ["apiVersion: relctl/v1", "kind: Config", "targetApps:"]
        for app in self.app_ids:
            lines.append(f"  {app}: {{name: App {app[3:]}, environment: production}}")
        return "\n".join(lines) + "\n"


class TimedWorkspace(Workspace):
    """A Workspace that times its last ``sync`` and ``git fetch`` (seconds)."""

    sync_seconds = 0.0
    fetch_seconds = 0.0

    def sync(self) -> str:
        self.fetch_seconds = 0.0
        started = time.perf_counter()
        try:
            return super().sync()
        finally:
            self.sync_seconds = time.perf_counter() - started

    def _fetch(self) -> None:
        started = time.perf_counter()
        try:
            super()._fetch()
        finally:
            self.fetch_seconds += time.perf_counter() - started


def count_mutations(db: Path) -> int:
    """Platform mutations that took effect so far (one idempotency record each)."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()
    return int(row[0])


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0); False when not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def rss_kib(field: str = "VmHWM") -> int | None:
    """VmHWM (peak) or VmRSS (now) of this process in KiB, None when /proc is not there."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


@dataclass
class Measured:
    """One measured pass."""

    name: str
    wall: float
    fetch: float
    sync: float
    commits: int
    mutations: int
    changed_files: int
    acted: int
    transitions: int
    profile: str = ""

    @property
    def beyond_fetch(self) -> float:
        return self.wall - self.fetch


class Bench:
    def __init__(self, tmp: Path, layout: Layout) -> None:
        self.tmp = tmp
        self.layout = layout
        self.bare = tmp / "origin.git"
        self.db = tmp / "platform.db"
        self.simulator: Simulator | None = None
        self.workspace: TimedWorkspace | None = None

    # -- setup -------------------------------------------------------------------------------

    def build(self) -> None:
        layout = self.layout
        started = time.perf_counter()
        files = {"relctl.yaml": layout.config(), "access.yaml": layout.access()}
        for _index, mp, app in layout.pairs():
            files[f"releases/{mp}/{app}.yaml"] = layout.manifest(mp, app, SETTLED_GRAYSCALE)
        make_remote(self.tmp, files)
        log(f"remote: {len(files)} files in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        simulator = Simulator(self.db)
        simulator.set_clock(manual=True, at=START)
        for app in layout.app_ids:
            simulator.set_app(
                app,
                pilot_required=False,
                review="auto",
                review_after=0,
                build_seconds=0,
                test_seconds=0,
            )
        for n in range(layout.mini_programs):
            mp = f"mp{n:05d}"
            simulator.upload(mp, layout.version(mp))
        self.simulator = simulator
        log(
            f"simulator: {layout.apps} apps, {layout.mini_programs} versions uploaded in "
            f"{time.perf_counter() - started:.1f} s"
        )

        started = time.perf_counter()
        workspace = TimedWorkspace(str(self.bare), "main", self.tmp / "controller")
        workspace.open()
        self.workspace = workspace
        log(f"controller clone in {time.perf_counter() - started:.1f} s")

    def controller(self) -> Controller:
        assert self.simulator is not None and self.workspace is not None
        return Controller(
            self.workspace,
            self.simulator,
            now=self.simulator.now,
            trust=TrustSettings(first_use=True),
        )

    def settle(self, controller: Controller, max_passes: int = 12) -> list[float]:
        """Setup passes until one makes no commit; the wall time of each."""
        walls = []
        total = self.layout.releases
        every = max(1, total // 4)

        def progress(_result: ReleaseResult, done: int, of: int) -> None:
            if done % every == 0 and done < of:
                log(f"  ... {done}/{of} releases")

        controller.progress = progress
        try:
            for number in range(1, max_passes + 1):
                started = time.perf_counter()
                result = controller.pass_once(raise_errors=True)
                walls.append(time.perf_counter() - started)
                assert result is not None
                acted = sum(1 for r in result.releases if r.result is not None)
                phases = _phases(result)
                log(
                    f"setup pass {number}: {walls[-1]:.1f} s, {acted} step(s), "
                    f"{len(result.changed)} status file(s) changed, "
                    f"{'commit' if result.pushed else 'no commit'}; phases: {phases}"
                )
                if result.pushed is None:
                    return walls
        finally:
            controller.progress = None
        raise RuntimeError(f"releases did not settle in {max_passes} passes")

    def person_raises_grayscale(self, count: int) -> str:
        """A person's commit setting grayscale: 100 on ``count`` manifests, spread evenly."""
        clone = self.tmp / "person"
        if not clone.exists():
            git(self.tmp, "clone", "--quiet", "--branch", "main", str(self.bare), str(clone))
        git(clone, "pull", "--quiet", "--ff-only")
        stride = max(1, self.layout.releases // max(count, 1))
        chosen = 0
        for index, mp, app in self.layout.pairs():
            if chosen >= count:
                break
            if index % stride:
                continue
            (clone / "releases" / mp / f"{app}.yaml").write_text(
                self.layout.manifest(mp, app, STEP_GRAYSCALE)
            )
            chosen += 1
        git(clone, "commit", "--quiet", "-a", "-m", f"Release {chosen} mini programs fully")
        git(clone, "push", "--quiet", "origin", "main")
        return git(clone, "rev-parse", "HEAD")

    # -- measuring ---------------------------------------------------------------------------

    def measure(self, name: str, controller: Controller, *, profile: bool = False) -> Measured:
        assert self.simulator is not None and self.workspace is not None
        self.simulator.advance(TICK)
        commits_before = remote_commits(self.bare)
        mutations_before = count_mutations(self.db)
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = controller.pass_once(raise_errors=True)
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - started
        assert result is not None
        text = ""
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
            text = out.getvalue()
        return Measured(
            name=name,
            wall=wall,
            fetch=self.workspace.fetch_seconds,
            sync=self.workspace.sync_seconds,
            commits=remote_commits(self.bare) - commits_before,
            mutations=count_mutations(self.db) - mutations_before,
            changed_files=len(result.changed),
            acted=sum(1 for r in result.releases if r.result is not None),
            transitions=sum(1 for r in result.releases if r.transition),
            profile=text,
        )

    def close(self) -> None:
        if self.workspace is not None:
            self.workspace.close()
        if self.simulator is not None:
            self.simulator.close()


def _phases(result: PassResult) -> str:
    counts: dict[str, int] = {}
    for r in result.releases:
        counts[str(r.status.phase)] = counts.get(str(r.status.phase), 0) + 1
    return ", ".join(f"{phase} {n}" for phase, n in sorted(counts.items()))


@contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="relctl-bench-reconcile-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept: {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def row(m: Measured) -> str:
    return (
        f"{m.name:<24} {m.wall:7.2f} {m.fetch:7.2f} {m.sync:7.2f} {m.beyond_fetch:8.2f} "
        f"{m.commits:7d} {m.mutations:9d} {m.changed_files:7d} {m.acted:6d} {m.transitions:6d}"
    )


HEADER = (
    f"{'pass':<24} {'wall s':>7} {'fetch':>7} {'sync':>7} {'beyond':>8} "
    f"{'commits':>7} {'mutations':>9} {'files':>7} {'steps':>6} {'phase':>6}"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--releases", type=int, default=10_000, help="releases (10000)")
    parser.add_argument(
        "--step-releases", type=int, default=1_000, help="releases taking a step (1000)"
    )
    parser.add_argument("--apps", type=int, default=10, help="target apps (10)")
    parser.add_argument(
        "-r", "--repeat", type=int, default=3, help="warm unchanged passes; median shown (3)"
    )
    parser.add_argument(
        "--profile",
        action="append",
        choices=PROFILES,
        default=[],
        help="print the cProfile of this pass (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.releases < 1 or args.apps < 1 or args.repeat < 1 or args.step_releases < 1:
        parser.error("--releases, --apps, --repeat and --step-releases must be at least 1")
    step_count = min(args.step_releases, args.releases)
    layout = Layout(args.releases, min(args.apps, args.releases))
    failures: list[str] = []

    with workdir(args.keep) as tmp:
        isolate_git(tmp / "home")
        bench = Bench(tmp, layout)
        try:
            log(
                f"setup: {layout.releases} releases = {layout.mini_programs} mini programs x "
                f"{layout.apps} target apps, in {tmp}"
            )
            started = time.perf_counter()
            bench.build()
            build_s = time.perf_counter() - started
            daemon = bench.controller()
            settle_walls = bench.settle(daemon)
            setup_s = time.perf_counter() - started

            warm = []
            for i in range(args.repeat):
                warm.append(
                    bench.measure(
                        f"unchanged, warm #{i + 1}",
                        daemon,
                        profile="warm" in args.profile and i == args.repeat - 1,
                    )
                )
                log(f"warm unchanged pass #{i + 1}: {warm[-1].wall:.2f} s")

            resync_after = daemon.cache.resync.total_seconds()
            assert bench.simulator is not None
            bench.simulator.advance(resync_after)
            resync = bench.measure("unchanged, resync", daemon, profile="resync" in args.profile)
            log(f"resync pass: {resync.wall:.2f} s")

            cold = bench.measure(
                "unchanged, cold cache", bench.controller(), profile="cold" in args.profile
            )
            log(f"cold unchanged pass: {cold.wall:.2f} s")

            started = time.perf_counter()
            bench.person_raises_grayscale(step_count)
            log(
                f"person's commit: grayscale {STEP_GRAYSCALE} on {step_count} manifests "
                f"({time.perf_counter() - started:.1f} s)"
            )
            can_reset = reset_peak_rss()
            step_start_rss = rss_kib("VmRSS")
            step = bench.measure(f"{step_count} steps", daemon, profile="step" in args.profile)
            step_peak = rss_kib() if can_reset else None
            log(f"step pass: {step.wall:.2f} s")
        finally:
            bench.close()

    lifetime_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    median_warm = statistics.median(m.wall for m in warm)
    median_beyond = statistics.median(m.beyond_fetch for m in warm)
    typical = min(warm, key=lambda m: abs(m.wall - median_warm))

    for m in (*warm, resync, cold, step):
        if m.profile:
            print(f"\n--- cProfile: {m.name} ---\n{m.profile}")

    print(
        f"{layout.releases} releases ({layout.mini_programs} mini programs x {layout.apps} "
        f"target apps); settled at Grayscale {SETTLED_GRAYSCALE}% (Ready=True)"
    )
    print(
        f"setup     {setup_s:.1f} s: repo + simulator + clone {build_s:.1f} s, "
        f"{len(settle_walls)} passes to settle {sum(settle_walls):.1f} s "
        f"({', '.join(f'{w:.1f}' for w in settle_walls)}), "
        f"{sum(settle_walls[:-1]) / max(1, len(settle_walls) - 1) / layout.releases * 1000:.2f}"
        " ms per release-step"
    )
    print()
    print(HEADER)
    for m in (*warm, resync, cold, step):
        print(row(m))
    print(
        "(fetch = git fetch; sync = fetch + reset + clean; beyond = wall - fetch; "
        "files = status files changed; steps = platform steps taken; "
        "phase = releases that changed phase)"
    )
    print()
    print(
        f"unchanged pass, warm: median {median_warm:.2f} s wall, "
        f"{median_beyond:.2f} s beyond fetch (git fetch {typical.fetch:.2f} s, "
        f"sync {typical.sync:.2f} s)"
    )
    print(
        f"step pass: {step.wall:.2f} s wall, {step.commits} commit(s), {step.acted} steps, "
        f"{step.transitions} phase changes, peak RSS during the pass "
        + (
            f"{step_peak / 1024:.0f} MB (RSS at its start {step_start_rss / 1024:.0f} MB)"
            if step_peak and step_start_rss
            else "n/a"
        )
        + f", process lifetime peak (ru_maxrss) {lifetime_peak / 1024:.0f} MB"
    )
    for m in (*warm, resync, cold):
        if m.commits != 0 or m.mutations != 0:
            failures.append(
                f"{m.name}: {m.commits} commit(s), {m.mutations} mutation(s) "
                "over unchanged inputs (must be 0)"
            )
    if step.commits != 1:
        failures.append(f"step pass: {step.commits} commits (must be exactly 1)")
    if step.acted != step_count:
        failures.append(f"step pass: {step.acted} steps taken, {step_count} expected")

    met = median_beyond <= UNCHANGED_TARGET_S and all(m.commits == 0 for m in warm)
    print(
        f"target 1 (unchanged {layout.releases}: <= {UNCHANGED_TARGET_S:g} s beyond fetch, "
        f"no commit): {'target met' if met else 'target missed'} "
        f"({median_beyond:.2f} s beyond fetch)"
    )
    print(
        f"target 2 ({step_count} steps in one pass: exactly one commit): "
        f"{'target met' if step.commits == 1 else 'target missed'} "
        f"({step.commits} commit(s), {step.wall:.2f} s)"
    )
    for failure in failures:
        print(f"INVARIANT VIOLATED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
