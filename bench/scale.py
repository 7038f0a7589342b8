"""Benchmark of one release repository at scale: 1,000, 10,000 and 100,000 releases.

Run by ``make bench-scale`` (or ``.venv/bin/python bench/scale.py --sizes 1000,10000``). For
each size (releases = mini programs x ``--apps`` target apps, 10 by default) it builds a world
quickly and measures, in this process, what a daemon does with it:

- **validate**: ``relctl validate --repo`` (the click command, in-process) over a directory
  holding every manifest, ``relctl.yaml`` and ``access.yaml``;
- **cold pass** (the settling pass): a new controller with an empty memory over a platform
  where every release already is at Grayscale 10% (``Ready``): it observes every release and
  writes every status file in one commit;
- **own commit pass**: the same, warm controller again: main changed only by its own status
  commit (no commit expected);
- **unchanged pass**: once more, nothing changed at all (no commit expected): the steady state;
- **step pass**: a person's commit sets ``grayscale: 100`` on ``--steps`` (1,000) manifests;
  one pass fully releases each of them (one commit expected);
- **status commit**: the wall time of ``Workspace.write_status`` within those passes, and the
  files it changed;
- peak RSS of each phase (``/proc/self/clear_refs`` resets the high-water mark; Linux only).

How the world is built without driving every release through controller passes: a template
(one mini program on every target app) is settled by the real controller on a small
repository first; its simulator records are then copied, with the mini program id replaced,
into the simulator of each size (one SQLite transaction), and the manifests (identical but for
their ids) are written with ``git fast-import``. The cold pass then settles the controller's
memory and the status files from what the platform says, as a restarted daemon would.

Figures are printed, never asserted: wall times on a shared machine are noisy, so the table
also shows counts (files, commits, steps). Exit status 1 only when an invariant is broken (a
commit or a platform mutation on the unchanged pass, not exactly one commit on the step pass,
a release not settled after the cold pass), else 0. ``--profile cold`` (or unchanged, step)
prints the top of that pass's cProfile.
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
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from benchutil import count_mutations, isolate_git, reset_peak_rss
from click.testing import CliRunner

from controller.cli import cli
from controller.daemon import CollectorPacing, Controller
from controller.gitops import PushResult, Workspace
from controller.platform.sim import Simulator, tables
from controller.platform.sim.model import UploadedVersion
from controller.platform.sim.records import ReleaseRecord
from controller.reconcile import PassResult
from controller.trust import TrustSettings

START = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
#: Seconds the simulator's clock moves before each measured pass (a daemon tick).
TICK = 30.0
VERSION = "1.4.0"
SETTLED = 10
STEP_TO = 100
TEMPLATE_MP = "mp00000"
PROFILES = ("cold", "own commit", "unchanged", "step")
PERSON = "Maria <maria@example.com>"

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
    name: Shop {mp}
    description: Order, pay and track deliveries from shop {mp} with your wallet.
    slogan: Shop {mp}, one tap away
  configuration:
    pages: [pages/index/index, pages/cart/cart, pages/orders/orders]
    window: {{navigationBarTitleText: "Shop {mp}"}}
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
# git and memory, measured from outside the controller
# --------------------------------------------------------------------------------------------


def git(cwd: Path, *args: str, data: bytes | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {done.stderr.decode().strip()}")
    return done.stdout.decode().strip()


def fast_import(bare: Path, files: Mapping[str, str], message: str, *, parent: bool) -> str:
    """One commit of ``files`` on the bare remote's main, as the person ``PERSON``."""
    stream = bytearray(
        f"commit refs/heads/main\ncommitter {PERSON} {int(time.time())} +0000\n"
        f"data {len(message.encode())}\n{message}\n".encode()
    )
    if parent:
        stream += b"from refs/heads/main^0\n"
    for relpath, text in sorted(files.items()):
        data = text.encode()
        stream += f"M 100644 inline {relpath}\ndata {len(data)}\n".encode() + data + b"\n"
    git(bare, "fast-import", "--quiet", data=bytes(stream))
    return git(bare, "rev-parse", "refs/heads/main")


def remote_commits(bare: Path) -> int:
    return int(git(bare, "rev-list", "--count", "refs/heads/main"))


def peak_rss_mb() -> float | None:
    """VmHWM of this process in MB (since the last reset), None when /proc is not there."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class TimedWorkspace(Workspace):
    """A Workspace that times its ``sync`` and ``write_status`` calls (seconds)."""

    sync_seconds = 0.0
    commit_seconds = 0.0
    commit_files = 0

    def sync(self) -> str:
        started = time.perf_counter()
        try:
            return super().sync()
        finally:
            self.sync_seconds = time.perf_counter() - started

    def write_status(
        self,
        files: Mapping[str, bytes | None],
        message: str,
        *,
        observed_commit: str,
        skip_ci: bool = False,
        max_attempts: int = 5,
        before_push: Callable[[str], None] | None = None,
    ) -> PushResult | None:
        started = time.perf_counter()
        try:
            result = super().write_status(
                files, message, observed_commit=observed_commit, skip_ci=skip_ci,
                max_attempts=max_attempts, before_push=before_push,
            )  # fmt: skip
        finally:
            self.commit_seconds = time.perf_counter() - started
        self.commit_files = len(result.files) if result is not None else 0
        return result


# --------------------------------------------------------------------------------------------
# The world of one size
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    releases: int
    apps: int

    @property
    def app_ids(self) -> list[str]:
        return [f"app{j:02d}" for j in range(self.apps)]

    @property
    def mini_programs(self) -> list[str]:
        return [f"mp{n:05d}" for n in range(-(-self.releases // self.apps))]

    def pairs(self) -> Iterator[tuple[str, str]]:
        for index in range(self.releases):
            n, j = divmod(index, self.apps)
            yield f"mp{n:05d}", f"app{j:02d}"

    def manifest(self, mp: str, app: str, grayscale: int = SETTLED) -> str:
        return MANIFEST.format(mp=mp, app=app, version=VERSION, grayscale=grayscale)

    def files(self) -> dict[str, str]:
        files = {"relctl.yaml": self.config(), "access.yaml": self.access()}
        for mp, app in self.pairs():
            files[f"releases/{mp}/{app}.yaml"] = self.manifest(mp, app)
        return files

    def access(self) -> str:
        """Maria (who commits) is the master; one owner per ten mini programs."""
        lines = ["apiVersion: relctl/v1", "kind: Access", "members:"]
        lines.append("  - {email: maria@example.com, name: Maria, role: master}")
        mps = self.mini_programs
        for team in range(0, len(mps), 10):
            owned = ", ".join(mps[team : team + 10])
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


def new_simulator(db: Path, layout: Layout) -> Simulator:
    simulator = Simulator(db)
    simulator.set_clock(manual=True, at=START)
    for app in layout.app_ids:
        simulator.set_app(
            app, pilot_required=False, review="auto", review_after=0, build_seconds=0,
            test_seconds=0,
        )  # fmt: skip
    return simulator


def controller_for(workspace: Workspace, simulator: Simulator) -> Controller:
    """A controller as ``relctl run`` makes one (the garbage collector paced between passes)."""
    return Controller(
        workspace,
        simulator,
        now=simulator.now,
        trust=TrustSettings(first_use=True),
        collector=CollectorPacing(),
    )


@dataclass
class Template:
    """The settled simulator records of one mini program on every target app, and the
    simulator's clock when they settled."""

    records: dict[str, str]  # target app -> the record as JSON
    now: datetime
    passes: int


def settle_template(tmp: Path, apps: int) -> Template:
    """Drive ``TEMPLATE_MP`` on every target app to Grayscale 10% with the real controller."""
    layout = Layout(apps, apps)
    tmp.mkdir(parents=True, exist_ok=True)
    bare = tmp / "origin.git"
    git(tmp, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    fast_import(bare, layout.files(), "Seed", parent=False)
    simulator = new_simulator(tmp / "platform.db", layout)
    simulator.upload(TEMPLATE_MP, VERSION)
    with Workspace(str(bare), "main", tmp / "controller") as workspace:
        controller = controller_for(workspace, simulator)
        passes = 0
        while True:
            passes += 1
            if passes > 15:
                raise RuntimeError("the template releases did not settle in 15 passes")
            simulator.advance(TICK)
            result = controller.pass_once(raise_errors=True)
            assert result is not None
            if result.pushed is None and all(
                str(r.status.phase) == "Grayscale" for r in result.releases
            ):
                break
        controller.state.close()
    now = simulator.now()
    simulator.close()
    with sqlite3.connect(tmp / "platform.db") as conn:
        rows = conn.execute("SELECT target_app, data FROM releases").fetchall()
    return Template(dict(rows), now, passes)


def seed_simulator(db: Path, layout: Layout, template: Template) -> None:
    """Every version uploaded and every release at Grayscale 10%, copied from the template,
    written in one transaction (what 100,000 x 6 platform calls would otherwise do).

    The rows are what ``tables.save_release`` writes (checked on the first row of each
    target app), without building a record per release: 100,000 in seconds, not minutes."""
    simulator = new_simulator(db, layout)
    simulator.set_clock(manual=True, at=template.now)
    simulator.close()
    uploaded_at = template.now.timestamp() - 3600
    dues = {
        app: ReleaseRecord(**json.loads(data)).next_due() for app, data in template.records.items()
    }
    with sqlite3.connect(db) as conn:
        for mp in layout.mini_programs:
            tables.save_version(conn, UploadedVersion(mp, VERSION, uploaded_at))
        rows, checks = [], []
        for seq, (mp, app) in enumerate(layout.pairs(), start=1):
            data = json.loads(template.records[app].replace(TEMPLATE_MP, mp))
            data.update(release_id=f"R-{seq:06d}", seq=seq)
            row = (
                f"R-{seq:06d}", seq, mp, app, VERSION, data["stage"], dues[app],
                json.dumps(data, sort_keys=True),
            )  # fmt: skip
            if mp == TEMPLATE_MP:  # written by the simulator's own code, to check the others
                tables.save_release(conn, ReleaseRecord(**data))
                checks.append(row)
            else:
                rows.append(row)
        stored = conn.execute(
            "SELECT release_id, seq, mini_program, target_app, version, stage, due, data "
            "FROM releases ORDER BY seq"
        ).fetchall()
        if [tuple(r) for r in stored] != checks:
            raise RuntimeError("the simulator's release rows changed: update seed_simulator")
        # list_releases' change sequence: one number per release after the template's, and
        # the digest of the snapshot each shows (what save_release stores beside it)
        top = conn.execute("SELECT COALESCE(MAX(change_seq), 0) FROM releases").fetchone()[0]
        conn.executemany(
            "INSERT INTO releases (release_id, seq, mini_program, target_app, version, stage, "
            "due, data, change_seq, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (*row, top + number, tables.data_digest(row[-1]))
                for number, row in enumerate(rows, start=1)
            ],
        )
        tables.set_meta(conn, "counter:release", layout.releases)


def write_work_tree(root: Path, files: Mapping[str, str]) -> None:
    for relpath, text in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass
class Phase:
    """One measured phase of one size."""

    wall: float
    peak_mb: float | None
    cpu: float = 0.0
    commits: int = 0
    mutations: int = 0
    files: int = 0
    steps: int = 0
    sync: float = 0.0
    commit: float = 0.0
    note: str = ""
    profile: str = ""


@dataclass
class Size:
    releases: int
    setup: dict[str, float] = field(default_factory=dict)
    phases: dict[str, Phase] = field(default_factory=dict)


def cpu_seconds() -> float:
    """CPU time of this process and of its children that ended (git commands), in seconds:
    less noisy than wall time on a shared machine."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def measured(call: Callable[[], T], *, profile: bool) -> tuple[T, float, float | None, str, float]:
    """(result, wall seconds, peak RSS MB during the call, cProfile text, CPU seconds)."""
    reset = reset_peak_rss()
    cpu = cpu_seconds()
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    try:
        result = call()
    finally:
        if profiler is not None:
            profiler.disable()
    wall = time.perf_counter() - started
    text = ""
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        text = out.getvalue()
    return result, wall, peak_rss_mb() if reset else None, text, cpu_seconds() - cpu


def run_size(
    tmp: Path, releases: int, apps: int, steps: int, template: Template, profiles: list[str]
) -> tuple[Size, list[str]]:
    layout = Layout(releases, apps)
    size = Size(releases)
    failures: list[str] = []
    bare = tmp / "origin.git"
    db = tmp / "platform.db"

    started = time.perf_counter()
    files = layout.files()
    git(tmp, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git(bare, "config", "gc.auto", "0")
    fast_import(bare, files, "Seed", parent=False)
    size.setup["repository"] = time.perf_counter() - started
    started = time.perf_counter()
    seed_simulator(db, layout, template)
    size.setup["simulator"] = time.perf_counter() - started
    started = time.perf_counter()
    write_work_tree(tmp / "checkout", files)
    size.setup["checkout for validate"] = time.perf_counter() - started
    del files
    log(f"  setup: {', '.join(f'{k} {v:.1f} s' for k, v in size.setup.items())}")

    runner = CliRunner()
    done, wall, peak, _, cpu = measured(
        lambda: runner.invoke(cli, ["validate", "--repo", str(tmp / "checkout")]), profile=False
    )
    last = (done.output.strip().splitlines() or [""])[-1]
    size.phases["validate"] = Phase(wall, peak, cpu, note=f"exit {done.exit_code}: {last[:60]}")
    if done.exit_code != 0:
        failures.append(f"{releases}: relctl validate exit {done.exit_code}: {last}")
    log(f"  validate: {wall:.1f} s ({last[:80]})")
    shutil.rmtree(tmp / "checkout")

    simulator = Simulator(db, create=False)
    workspace = TimedWorkspace(str(bare), "main", tmp / "controller").open()
    try:
        controller = controller_for(workspace, simulator)

        def one_pass(name: str) -> tuple[PassResult, Phase]:
            simulator.advance(TICK)
            commits, mutations = remote_commits(bare), count_mutations(db)
            result, wall, peak, text, cpu = measured(
                lambda: controller.pass_once(raise_errors=True), profile=name in profiles
            )
            assert result is not None
            phase = Phase(
                wall, peak, cpu, commits=remote_commits(bare) - commits,
                mutations=count_mutations(db) - mutations, files=len(result.changed),
                steps=sum(1 for r in result.releases if r.result is not None),
                sync=workspace.sync_seconds,
                commit=workspace.commit_seconds if result.pushed is not None else 0.0,
                profile=text,
            )  # fmt: skip
            size.phases[name] = phase
            log(
                f"  {name} pass: {wall:.1f} s, {phase.steps} steps, {phase.files} status files, "
                f"{phase.commits} commit(s), status commit {phase.commit:.2f} s"
            )
            return result, phase

        result, cold = one_pass("cold")
        phases = _phases(result)
        cold.note = ", ".join(f"{k} {v}" for k, v in sorted(phases.items()))
        if phases.get("Grayscale", 0) != releases:
            failures.append(f"{releases}: after the cold pass: {cold.note}")
        # The first pass after the cold one reads main with the controller's own status
        # commit on it; the second is the steady state of a daemon with nothing to do.
        for name in ("own commit", "unchanged"):
            _result, unchanged = one_pass(name)
            if unchanged.commits or unchanged.mutations:
                failures.append(
                    f"{releases}: {name} pass made {unchanged.commits} commit(s) and "
                    f"{unchanged.mutations} mutation(s)"
                )
        count = min(steps, releases)
        stride = max(1, releases // count)
        chosen = {
            f"releases/{mp}/{app}.yaml": layout.manifest(mp, app, STEP_TO)
            for index, (mp, app) in enumerate(layout.pairs())
            if index % stride == 0
        }
        chosen = dict(list(chosen.items())[:count])
        fast_import(bare, chosen, f"Release {count} mini programs fully", parent=True)
        _result, step = one_pass("step")
        step.note = f"{count} releases asked to go to {STEP_TO}%"
        if step.commits != 1 or step.steps != count:
            failures.append(
                f"{releases}: step pass: {step.commits} commit(s), {step.steps} steps "
                f"({count} expected, in one commit)"
            )
        controller.state.close()
    finally:
        workspace.close()
        simulator.close()
    return size, failures


def _phases(result: PassResult) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in result.releases:
        counts[str(r.status.phase)] = counts.get(str(r.status.phase), 0) + 1
    return counts


@contextmanager
def scratch(keep: bool, prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"kept: {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _mb(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "n/a"


def report(sizes: list[Size], apps: int) -> None:
    print(f"\nrelctl at scale: releases = mini programs x {apps} target apps")
    print(
        f"{'releases':>9} {'phase':<10} {'wall s':>8} {'cpu s':>8} {'cpu ms/rel':>10} "
        f"{'peak MB':>8} {'sync s':>7} {'commit s':>8} {'files':>7} {'commits':>7} "
        f"{'steps':>6} {'mut':>6}"
    )
    for size in sizes:
        for name, p in size.phases.items():
            per = p.cpu / size.releases * 1000
            print(
                f"{size.releases:>9,} {name:<10} {p.wall:8.2f} {p.cpu:8.2f} {per:10.3f} "
                f"{_mb(p.peak_mb):>8} {p.sync:7.2f} {p.commit:8.2f} {p.files:7,} "
                f"{p.commits:7} {p.steps:6,} {p.mutations:6,}"
            )
    print(
        "(cpu = CPU seconds of this process and its finished git children: less noisy than "
        "wall on a shared machine; cpu ms/rel = cpu / releases; peak MB = this process's RSS "
        "high-water mark during the phase; sync = fetch + moving the branch (wall); commit = "
        "Workspace.write_status, push included (wall); files = status files the pass "
        "changed; mut = platform mutations)"
    )
    for size in sizes:
        notes = [f"{n}: {p.note}" for n, p in size.phases.items() if p.note]
        setup = ", ".join(f"{k} {v:.1f} s" for k, v in size.setup.items())
        print(f"{size.releases:,}: setup {setup}; " + "; ".join(notes))

    names = ["validate", "cold", "own commit", "unchanged", "step"]
    for unit in ("cpu", "wall"):
        print(f"\ngrowth curve ({unit} s; xN = against the previous size)")
        print(f"{'releases':>9} " + " ".join(f"{n:>15}" for n in names) + f" {'step commit':>12}")
        previous: Size | None = None
        for size in sizes:
            cells = []
            for name in names:
                value = _value(size, name, unit)
                growth = ""
                if previous is not None and _value(previous, name, unit) > 0:
                    growth = f" x{value / _value(previous, name, unit):.1f}"
                cells.append(f"{value:8.2f}{growth:>7}")
            commit = size.phases["step"].commit if "step" in size.phases else float("nan")
            print(f"{size.releases:>9,} " + " ".join(cells) + f" {commit:12.2f}")
            previous = size
    print(
        "(step commit = wall s of the step pass's status commit: 1,000 files whatever the "
        "size, so it should stay flat while the repository grows; every other phase touches "
        "every release)"
    )


def _value(size: Size, name: str, unit: str) -> float:
    phase = size.phases.get(name)
    if phase is None:
        return float("nan")
    return phase.cpu if unit == "cpu" else phase.wall


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="releases per run (1000,10000,100000)"
    )
    parser.add_argument("--apps", type=int, default=10, help="target apps (10)")
    parser.add_argument("--steps", type=int, default=1_000, help="releases taking a step (1000)")
    parser.add_argument(
        "--profile", action="append", choices=PROFILES, default=[], help="print a pass's cProfile"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args()
    try:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes takes numbers separated by commas, e.g. 1000,10000")
    if not sizes or min(sizes) < args.apps or args.apps < 1 or args.steps < 1:
        parser.error("every size must be at least --apps, and --apps and --steps at least 1")

    results: list[Size] = []
    failures: list[str] = []
    with scratch(args.keep, "relctl-bench-scale-") as tmp:
        isolate_git(tmp / "home")
        started = time.perf_counter()
        template = settle_template(tmp / "template", args.apps)
        log(
            f"template: {args.apps} releases settled in {template.passes} passes "
            f"({time.perf_counter() - started:.1f} s)"
        )
        for releases in sizes:
            log(f"{releases:,} releases ({-(-releases // args.apps):,} mini programs):")
            where = tmp / f"size-{releases}"
            where.mkdir()
            size, broken = run_size(where, releases, args.apps, args.steps, template, args.profile)
            results.append(size)
            failures += broken
            if not args.keep:
                shutil.rmtree(where, ignore_errors=True)
    for size in results:
        for name, phase in size.phases.items():
            if phase.profile:
                print(f"\n--- cProfile: {name} pass, {size.releases:,} releases ---")
                print(phase.profile)
    report(results, args.apps)
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process lifetime peak RSS (ru_maxrss): {lifetime:.0f} MB")
    for failure in failures:
        print(f"INVARIANT VIOLATED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
