"""Benchmark of reconcile passes (``relctl run``) over a large release repository (issue 15).

Run by ``make bench`` (or ``.venv/bin/python bench/reconcile.py [--releases N]``). Everything
is local and real except the clock: a bare git remote in a temporary directory, the platform
simulator (SQLite) with a manual clock, and a :class:`controller.daemon.Controller` in this
process, as the daemon runs it (its ``PassCache`` stays warm between passes).

Setup (timed separately, progress on stderr): ``--apps`` target apps (10) x mini programs
make ``--releases`` (10,000) manifests, each with basic info and a configuration, and an
access.yaml (one master, one owner per ten mini programs) that the controller enforces; the
simulator has every version uploaded and every app with zero build/test time, automatic
review after 0 s and no pilot. Setup passes drive every release to Grayscale 10%
(``Ready=True``), one step per release per pass, until a pass makes no commit.

Then it measures, counting git processes (every one goes through ``gitops.run_git``),
platform calls, commits and platform mutations beside the wall time:

1. Unchanged pass, fast path (``--repeat`` times, median shown): main did not move and nothing
   is due. Target: <= 50 ms, one ``ls-remote``, 0 commits, 0 platform calls.
2. Unchanged pass, real (information): the same with the fast path bypassed (what a pass
   after a status commit, or any real pass over a warm cache, costs).
3. Resync pass: the clock at the settled releases' resync (5 min). The first resync of a
   process lists every release from the start (information); the one measured lists what
   changed since the recorded cursor. Target: <= 1 s.
4. Cold start (new process, existing workdir) to the first finished pass: a child Python
   process opens the workspace and the state and runs one pass; wall time includes the
   interpreter and imports. Target: <= 2 s. The child reports the split: imports, manifest
   loading (``reconcile.load_manifests``), the rest of the pass.
5. Step pass: a person's commit sets ``grayscale: 100`` on ``--step-releases`` (1,000)
   manifests; one pass of the warm controller takes one step each. Target: exactly one
   commit; peak RSS during the pass <= 250 MB (the high-water mark is reset before it when
   Linux allows, ``/proc/self/clear_refs``). Then another such pass runs under tracemalloc:
   the top allocation sites when the last release is done (the pass's peak, roughly).
6. Daemon loop: ``--loop-passes`` (1,000) passes, the clock moving so that every
   ``--loop-resync-every`` (100th) pass is a resync, under tracemalloc: growth between the
   10th and the last pass, with the top entries. Target: no growth.

Every figure is printed with its target beside it, never asserted. Exit status: 0 when the
invariants hold (no commit and no platform mutation on unchanged passes, exactly one commit on
the step pass), whether or not the time targets are met; 1 when an invariant is violated or a
pass fails. ``--profile fast`` (or real, resync, cold, step) prints the cProfile of that pass.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from benchutil import count_mutations, isolate_git, reset_peak_rss

from controller import access, gitops, lease, reconcile
from controller.daemon import CollectorPacing, Controller
from controller.gitops import Workspace
from controller.platform.protocol import Platform
from controller.platform.sim import Simulator
from controller.reconcile import PassResult, ReleaseResult
from controller.trust import TrustSettings

#: When this module's imports were done (wall clock): the cold-start process reports it.
IMPORTED_AT = time.time()

#: The simulator's manual clock starts here (fixed: messages show times of day).
START = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
#: Seconds the clock moves before each measured pass (a daemon tick).
TICK = 30.0
#: Grayscale every release settles at, and what the step passes ask for.
SETTLED_GRAYSCALE = 10
STEP_GRAYSCALE = 100
#: Targets of the issue (printed beside the figures, never asserted).
FAST_TARGET_S = 0.050
RESYNC_TARGET_S = 1.0
COLD_TARGET_S = 2.0
PEAK_RSS_TARGET_MB = 250
PROFILES = ("fast", "real", "resync", "cold", "step")

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


def rss_kib(field: str = "VmHWM") -> int | None:
    """VmHWM (peak) or VmRSS (now) of this process in KiB, None when /proc is not there."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------------------------
# counting: git processes and platform calls
# --------------------------------------------------------------------------------------------


class GitCounter:
    """Counts the git processes relctl starts (every one goes through ``gitops.run_git``)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        real = gitops.run_git

        def counting(cwd: Path, *args: str, **kwargs: Any) -> gitops.GitRun:
            self.calls[args[0]] += 1
            return real(cwd, *args, **kwargs)

        for module in (gitops, access, lease):
            module.run_git = counting  # type: ignore[attr-defined]

    def take(self) -> Counter[str]:
        taken, self.calls = self.calls, Counter()
        return taken


class CountingPlatform:
    """The simulator, counting every call by method name."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if name.startswith("_") or not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return found(*args, **kwargs)

        return call

    def take(self) -> Counter[str]:
        taken, self.calls = self.calls, Counter()
        return taken


def shown(calls: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(calls.items())) or "none"


@dataclass
class Measured:
    """One measured pass."""

    name: str
    wall: float
    commits: int
    mutations: int
    changed_files: int
    acted: int
    git: Counter[str] = field(default_factory=Counter)
    platform: Counter[str] = field(default_factory=Counter)
    unchanged: bool = False
    profile: str = ""


class Bench:
    def __init__(self, tmp: Path, layout: Layout) -> None:
        self.tmp = tmp
        self.layout = layout
        self.bare = tmp / "origin.git"
        self.db = tmp / "platform.db"
        self.simulator: Simulator | None = None
        self.counting: CountingPlatform | None = None
        self.workspace: TimedWorkspace | None = None
        self.git = GitCounter()

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
        self.counting = CountingPlatform(simulator)
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
        """A controller as ``relctl run`` makes one (the garbage collector paced)."""
        assert self.simulator is not None and self.workspace is not None
        return Controller(
            self.workspace,
            cast(Platform, self.counting),
            now=self.simulator.now,
            trust=TrustSettings(first_use=True),
            collector=CollectorPacing(),
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

    def person_raises_grayscale(self, count: int, offset: int = 0) -> str:
        """A person's commit setting grayscale: 100 on ``count`` manifests, spread evenly
        (``offset`` 1 picks others than 0 when ``count`` is at most half the releases)."""
        clone = self.tmp / "person"
        if not clone.exists():
            git(self.tmp, "clone", "--quiet", "--branch", "main", str(self.bare), str(clone))
        git(clone, "pull", "--quiet", "--ff-only")
        stride = max(1, self.layout.releases // max(count, 1))
        chosen = 0
        for index, mp, app in self.layout.pairs():
            if chosen >= count:
                break
            if (index - offset) % stride:
                continue
            (clone / "releases" / mp / f"{app}.yaml").write_text(
                self.layout.manifest(mp, app, STEP_GRAYSCALE)
            )
            chosen += 1
        git(clone, "commit", "--quiet", "-a", "-m", f"Release {chosen} mini programs fully")
        git(clone, "push", "--quiet", "origin", "main")
        return git(clone, "rev-parse", "HEAD")

    # -- measuring ---------------------------------------------------------------------------

    def measure(
        self,
        name: str,
        controller: Controller,
        *,
        profile: bool = False,
        advance: float = TICK,
        progress: Callable[[ReleaseResult, int, int], None] | None = None,
    ) -> Measured:
        assert self.simulator is not None and self.counting is not None
        self.simulator.advance(advance)
        commits_before = remote_commits(self.bare)
        mutations_before = count_mutations(self.db)
        self.git.take()
        self.counting.take()
        controller.progress = progress
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = controller.pass_once(raise_errors=True)
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - started
        controller.progress = None
        assert result is not None
        text = ""
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
            text = out.getvalue()
        return Measured(
            name=name,
            wall=wall,
            commits=remote_commits(self.bare) - commits_before,
            mutations=count_mutations(self.db) - mutations_before,
            changed_files=len(result.changed),
            acted=sum(1 for r in result.releases if r.result is not None),
            git=self.git.take(),
            platform=self.counting.take(),
            unchanged=result.unchanged,
            profile=text,
        )

    def cold_start(
        self, name: str, controller: Controller, *, profile: bool = False
    ) -> tuple[Measured, dict[str, Any]]:
        """A new process over the existing workdir: one pass, timed from its start (with
        ``profile`` under cProfile, so for the profile only)."""
        assert self.workspace is not None and self.simulator is not None
        self.simulator.advance(TICK)
        commits_before = remote_commits(self.bare)
        mutations_before = count_mutations(self.db)
        controller.close()
        self.workspace.close()
        started = time.perf_counter()
        spawned_at = time.time()
        done = subprocess.run(
            [sys.executable, __file__, "--child-cold", str(self.tmp)]
            + (["--profile", "cold"] if profile else []),
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"the cold-start process failed: {done.stderr.strip()[-2000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        report["imports"] = report.pop("imported_at") - spawned_at
        self.workspace.open()
        controller.state.open()
        return (
            Measured(
                name=name,
                wall=wall,
                commits=remote_commits(self.bare) - commits_before,
                mutations=count_mutations(self.db) - mutations_before,
                changed_files=report["changed"],
                acted=report["acted"],
                git=Counter(report["git"]),
                platform=Counter(report["platform"]),
                profile=report.get("profile", ""),
            ),
            report,
        )

    def close(self) -> None:
        if self.workspace is not None:
            self.workspace.close()
        if self.simulator is not None:
            self.simulator.close()


def child_cold(tmp: Path, profile: bool) -> int:
    """The cold-start process: open the workdir, run one pass, print one JSON line."""
    imported = time.perf_counter()
    git = GitCounter()
    loading = [0.0]
    real_load = reconcile.load_manifests

    high_water: dict[str, float | None] = {}

    def mark(name: str) -> None:
        peak = rss_kib()
        high_water[name] = peak / 1024 if peak else None

    def timed_load(tree: Any, validation: Any = None) -> Any:
        mark("before manifests")
        started = time.perf_counter()
        try:
            return real_load(tree, validation)
        finally:
            loading[0] += time.perf_counter() - started
            mark("after manifests")

    reconcile.load_manifests = timed_load
    parses = [0]
    real_parse = reconcile.parse_status  # type: ignore[attr-defined]

    def counted_parse(data: bytes, *, file: str) -> Any:
        parses[0] += 1
        return real_parse(data, file=file)

    reconcile.parse_status = counted_parse  # type: ignore[attr-defined]
    simulator = Simulator(tmp / "platform.db")
    counting = CountingPlatform(simulator)
    workspace = Workspace(str(tmp / "origin.git"), "main", tmp / "controller").open()
    controller = Controller(
        workspace,
        cast(Platform, counting),
        now=simulator.now,
        trust=TrustSettings(),
        collector=CollectorPacing(),
    )
    opened = time.perf_counter()
    rss_before = rss_kib("VmRSS")

    def at_the_end(_result: ReleaseResult, done: int, of: int) -> None:
        if done == of:
            mark("every release done")

    controller.progress = at_the_end
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    result = controller.pass_once(raise_errors=True)
    if profiler is not None:
        profiler.disable()
    finished = time.perf_counter()
    mark("pass finished (pushed)")
    assert result is not None
    text = ""
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        text = out.getvalue()
    controller.close()
    workspace.close()
    simulator.close()
    print(
        json.dumps(
            {
                "imported_at": IMPORTED_AT,
                "open": opened - imported,
                "pass": finished - opened,
                "manifests": loading[0],
                "yaml_parses": parses[0],
                "changed": len(result.changed),
                "acted": sum(1 for r in result.releases if r.result is not None),
                "git": dict(git.calls),
                "platform": dict(counting.calls),
                "profile": text,
                "rss_before_mb": rss_before / 1024 if rss_before else None,
                # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would be
                # the bench process's own peak at the fork.
                "peak_rss_mb": (rss_kib() or 0) / 1024,
                "high_water": high_water,
            }
        )
    )
    return 0


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
# memory
# --------------------------------------------------------------------------------------------


def top_entries(snapshot: tracemalloc.Snapshot, limit: int = 10) -> list[str]:
    """The largest allocation sites of a snapshot, one line each."""
    stats = snapshot.statistics("lineno")[:limit]
    return [f"  {s.size / 2**20:8.1f} MB {s.count:9d} blocks  {_site(s.traceback)}" for s in stats]


def growth_entries(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, limit: int = 10
) -> list[str]:
    stats = after.compare_to(before, "lineno")[:limit]
    return [
        f"  {s.size_diff / 2**10:+9.1f} KiB {s.count_diff:+8d} blocks  {_site(s.traceback)}"
        for s in stats
    ]


def _site(traceback: tracemalloc.Traceback) -> str:
    frame = traceback[0]
    name = frame.filename
    for marker in ("/controller/", "/site-packages/", "/lib/python"):
        if marker in name:
            name = name[name.index(marker) + 1 :]
            break
    return f"{name}:{frame.lineno}"


@dataclass
class Loop:
    """The daemon-loop measurement."""

    passes: int
    unchanged: int
    resyncs: int
    wall: float
    first: int
    last: int
    growth_kib: float
    traced_start_mib: float
    traced_end_mib: float
    rss_start_mib: float | None
    rss_end_mib: float | None
    entries: list[str]


def daemon_loop(bench: Bench, controller: Controller, passes: int, resync_every: int) -> Loop:
    """``passes`` passes as the daemon runs them, the clock moving so that every
    ``resync_every``-th pass is due for a resync, under tracemalloc. Growth is measured
    between two snapshots at the same point of the resync cycle: after the second cycle
    (everything warm) and after the last whole cycle."""
    assert bench.simulator is not None and bench.counting is not None
    step = controller.cache.resync.total_seconds() / max(1, resync_every)
    first = min(2 * resync_every, passes // 2)
    last = passes - passes % resync_every if passes - first >= resync_every else passes
    unchanged = resyncs = 0
    tracemalloc.start(1)
    before: tracemalloc.Snapshot | None = None
    after: tracemalloc.Snapshot | None = None
    traced_start = traced_end = 0.0
    rss_start = rss_end = None
    started = time.perf_counter()
    for number in range(1, passes + 1):
        bench.simulator.advance(step)
        bench.counting.take()
        result = controller.pass_once(raise_errors=True)
        assert result is not None
        calls = bench.counting.take()
        unchanged += result.unchanged
        resyncs += bool(calls.get("list_releases") or calls.get("find_releases"))
        if result.pushed is not None:
            raise RuntimeError(f"daemon loop pass {number} committed over an unchanged main")
        if number in (first, last):
            snapshot = tracemalloc.take_snapshot()
            traced = tracemalloc.get_traced_memory()[0] / 2**20
            rss = rss_kib("VmRSS")
            if number == first:
                before, traced_start, rss_start = snapshot, traced, rss
            if number == last:
                after, traced_end, rss_end = snapshot, traced, rss
    wall = time.perf_counter() - started
    tracemalloc.stop()
    assert before is not None and after is not None
    growth = sum(s.size_diff for s in after.compare_to(before, "filename")) / 2**10
    return Loop(
        passes=passes,
        unchanged=unchanged,
        resyncs=resyncs,
        wall=wall,
        first=first,
        last=last,
        growth_kib=growth,
        traced_start_mib=traced_start,
        traced_end_mib=traced_end,
        rss_start_mib=rss_start / 1024 if rss_start else None,
        rss_end_mib=rss_end / 1024 if rss_end else None,
        entries=growth_entries(before, after),
    )


def traced_step(bench: Bench, controller: Controller, count: int, offset: int) -> list[str]:
    """Another step pass under tracemalloc: the top allocation sites when its last release
    is done (before rendering and writing: the pass's peak, roughly), and the peak."""
    bench.person_raises_grayscale(count, offset=offset)
    snapshots: list[tracemalloc.Snapshot] = []

    def at_the_end(_result: ReleaseResult, done: int, of: int) -> None:
        if done == of:
            snapshots.append(tracemalloc.take_snapshot())

    tracemalloc.start(1)
    try:
        measured = bench.measure("step (traced)", controller, progress=at_the_end)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    lines = [
        f"traced step pass ({measured.acted} steps): tracemalloc peak {peak:.0f} MB; top "
        "allocation sites when its last release was done:"
    ]
    lines += top_entries(snapshots[-1]) if snapshots else ["  (no snapshot)"]
    return lines


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def row(m: Measured) -> str:
    return (
        f"{m.name:<30} {m.wall:8.3f} {m.commits:7d} {m.mutations:9d} {m.changed_files:6d} "
        f"{m.acted:6d}  git: {shown(m.git)}; platform: {shown(m.platform)}"
    )


HEADER = (
    f"{'pass':<30} {'wall s':>8} {'commits':>7} {'mutations':>9} {'files':>6} {'steps':>6}  "
    "git processes; platform calls"
)


def verdict(ok: bool) -> str:
    return "target met" if ok else "target missed"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--releases", type=int, default=10_000, help="releases (10000)")
    parser.add_argument(
        "--step-releases", type=int, default=1_000, help="releases taking a step (1000)"
    )
    parser.add_argument("--apps", type=int, default=10, help="target apps (10)")
    parser.add_argument(
        "-r", "--repeat", type=int, default=5, help="fast-path passes; median shown (5)"
    )
    parser.add_argument("--loop-passes", type=int, default=1_000, help="daemon loop (1000)")
    parser.add_argument(
        "--loop-resync-every", type=int, default=100, help="a resync every N loop passes (100)"
    )
    parser.add_argument(
        "--profile",
        action="append",
        choices=PROFILES,
        default=[],
        help="print the cProfile of this pass (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--child-cold", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_cold is not None:
        return child_cold(args.child_cold, "cold" in args.profile)
    if min(args.releases, args.apps, args.repeat, args.step_releases, args.loop_passes) < 1:
        parser.error("every count must be at least 1")
    step_count = min(args.step_releases, args.releases // 3 or 1)
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
            daemon = bench.controller()
            settle_walls = bench.settle(daemon)
            setup_s = time.perf_counter() - started

            fast = []
            for i in range(args.repeat):
                fast.append(
                    bench.measure(
                        f"unchanged, fast path #{i + 1}",
                        daemon,
                        profile="fast" in args.profile and i == args.repeat - 1,
                    )
                )
                log(f"fast-path pass #{i + 1}: {fast[-1].wall * 1000:.1f} ms")

            daemon.cache.forget_pass()
            real = bench.measure("unchanged, real (warm)", daemon, profile="real" in args.profile)
            log(f"real unchanged pass: {real.wall:.2f} s")

            assert bench.simulator is not None
            first_resync = bench.measure(
                "first resync (list all)", daemon, advance=_to_resync(bench, daemon)
            )
            log(f"first resync of the process: {first_resync.wall:.2f} s")
            resync = bench.measure(
                "resync (list changes)",
                daemon,
                advance=_to_resync(bench, daemon),
                profile="resync" in args.profile,
            )
            log(f"resync pass: {resync.wall:.3f} s")

            cold, split = bench.cold_start("cold start (new process)", daemon)
            log(f"cold start: {cold.wall:.2f} s")
            if "cold" in args.profile:
                cold.profile = bench.cold_start("cold (profiled)", daemon, profile=True)[0].profile

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
            traced = traced_step(bench, daemon, step_count, offset=1)
            log("traced step pass done")
            bench.measure("settle after the traced steps", daemon)  # their QR codes
            bench.person_raises_grayscale(step_count, offset=2)
            fresh_step, fresh = bench.cold_start(f"{step_count} steps (new process)", daemon)
            log(f"step pass in a new process: {fresh_step.wall:.2f} s")
            bench.measure("settle after the steps", daemon)
            loop = daemon_loop(bench, daemon, args.loop_passes, args.loop_resync_every)
            log(f"daemon loop: {loop.passes} passes in {loop.wall:.1f} s")
        finally:
            bench.close()

    lifetime_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    median_fast = statistics.median(m.wall for m in fast)

    for m in (*fast, real, resync, cold, step):
        if m.profile:
            print(f"\n--- cProfile: {m.name} ---\n{m.profile}")

    print(
        f"{layout.releases} releases ({layout.mini_programs} mini programs x {layout.apps} "
        f"target apps); settled at Grayscale {SETTLED_GRAYSCALE}% (Ready=True)"
    )
    print(
        f"setup {setup_s:.1f} s, {len(settle_walls)} passes to settle "
        f"({', '.join(f'{w:.1f}' for w in settle_walls)} s)"
    )
    print("wall times are noisy on a shared machine; counts are exact")
    print()
    print(HEADER)
    for m in (*fast, real, first_resync, resync, cold, step, fresh_step):
        print(row(m))
    print()
    fast_calls = fast[-1]
    fast_ok = (
        median_fast <= FAST_TARGET_S
        and all(m.unchanged and m.commits == 0 and not m.platform for m in fast)
        and all(dict(m.git) == {"ls-remote": 1} for m in fast)
    )
    print(
        f"unchanged pass (fast path): median {median_fast * 1000:.1f} ms, git "
        f"{shown(fast_calls.git)}, platform calls {sum(fast_calls.platform.values())}, "
        f"commits {fast_calls.commits} -- target <= {FAST_TARGET_S * 1000:.0f} ms, one "
        f"ls-remote, 0 commits, 0 platform calls: {verdict(fast_ok)}"
    )
    print(
        f"resync pass: {resync.wall:.3f} s, platform {shown(resync.platform)} -- target <= "
        f"{RESYNC_TARGET_S:g} s: {verdict(resync.wall <= RESYNC_TARGET_S)} (first resync of a "
        f"process, listing every release: {first_resync.wall:.2f} s)"
    )
    rest = split["pass"] - split["manifests"]
    print(
        f"cold start to the first finished pass: {cold.wall:.2f} s -- target <= "
        f"{COLD_TARGET_S:g} s: {verdict(cold.wall <= COLD_TARGET_S)}; split: interpreter + "
        f"imports {split['imports']:.2f} s, open {split['open']:.2f} s, pass {split['pass']:.2f} s "
        f"= manifest loading {split['manifests']:.2f} s + the rest {rest:.2f} s; "
        f"{split['yaml_parses']} status YAML parses, platform {shown(cold.platform)}"
    )
    peak_mb = step_peak / 1024 if step_peak else None
    print(
        f"{step_count}-step pass: {step.wall:.2f} s, {step.commits} commit(s), {step.acted} steps; "
        "peak RSS of this long-lived bench process during the pass (it ran every setup pass "
        "before) "
        + (
            f"{peak_mb:.0f} MB (RSS at its start {step_start_rss / 1024:.0f} MB) -- target <= "
            f"{PEAK_RSS_TARGET_MB} MB: {verdict(peak_mb <= PEAK_RSS_TARGET_MB)}"
            if peak_mb and step_start_rss
            else "n/a"
        )
        + f"; process lifetime peak (ru_maxrss) {lifetime_peak / 1024:.0f} MB"
    )
    print(
        f"{step_count}-step pass in a new process (its first pass, from a cold start): "
        f"{fresh_step.wall:.2f} s from the process start, {fresh_step.commits} commit(s), "
        f"{fresh_step.acted} steps; peak RSS of that process {fresh['peak_rss_mb']:.0f} MB "
        f"(before its pass {fresh['rss_before_mb']:.0f} MB; the simulator runs in it too) -- "
        f"target <= {PEAK_RSS_TARGET_MB} MB: {verdict(fresh['peak_rss_mb'] <= PEAK_RSS_TARGET_MB)}"
    )
    print(
        "  its RSS high-water mark along the pass: "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in fresh["high_water"].items() if mb)
    )
    for line in traced:
        print(line)
    print(
        f"daemon loop: {loop.passes} passes ({loop.unchanged} fast path, {loop.resyncs} "
        f"asked the platform) in {loop.wall:.1f} s under tracemalloc; traced memory "
        f"{loop.traced_start_mib:.1f} -> {loop.traced_end_mib:.1f} MB, growth from pass "
        f"{loop.first} to pass {loop.last} {loop.growth_kib:+.0f} KiB"
        + (
            f", RSS {loop.rss_start_mib:.0f} -> {loop.rss_end_mib:.0f} MB"
            if loop.rss_start_mib and loop.rss_end_mib
            else ""
        )
        + " -- target: no growth; top growth entries:"
    )
    for line in loop.entries:
        print(line)

    for m in (*fast, real, first_resync, resync, cold):
        if m.commits != 0 or m.mutations != 0:
            failures.append(
                f"{m.name}: {m.commits} commit(s), {m.mutations} mutation(s) "
                "over unchanged inputs (must be 0)"
            )
    if step.commits != 1 or fresh_step.commits != 1:
        failures.append(
            f"step passes: {step.commits} and {fresh_step.commits} commits (must be exactly 1)"
        )
    if step.acted != step_count or fresh_step.acted < step_count:
        failures.append(
            f"step passes: {step.acted}, {fresh_step.acted} steps, {step_count} expected"
        )
    for failure in failures:
        print(f"INVARIANT VIOLATED: {failure}")
    return 1 if failures else 0


def _to_resync(bench: Bench, controller: Controller) -> float:
    """Seconds to move the clock so that the settled releases are due for their resync."""
    assert bench.simulator is not None
    due = controller.cache.resync_due
    if due is None:
        return controller.cache.resync.total_seconds() + 1
    return max(1.0, (due - bench.simulator.now()).total_seconds() + 1)


if __name__ == "__main__":
    sys.exit(main())
