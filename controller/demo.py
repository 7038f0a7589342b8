"""``make demo``: the whole release workflow, end to end, in under two minutes.

What it sets up (everything under ``.relctl/demo/``, recreated on every run):

* a bare git ``origin`` seeded from this project's own sample release repository
  (``relctl.yaml``, ``access.yaml``, ``releases/``) and the rollout examples
  (``examples/rollouts/coupons/``);
* the embedded platform simulator with short build/test durations and a manual reviewer;
  GCash requires pilot testing, DANA and Touch 'n Go do not;
* the controller daemon (``relctl run``) as a separate process, exactly as in production.

Then a scripted team acts as people would, through the platform console (the reviewer) and
through git (developers push manifest changes to main), reacting to the status the controller
writes back:

====================  ==========================================================  ===============
release               what people do                                              ends as
====================  ==========================================================  ===============
shop on gcash         pilot goes well: complete testing + 20%, then 50%, then 100% Released
shop on dana          no pilot; straight to full release                          Released
shop on tng           reviewer rejects it; developer fixes the description; 10%;   Grayscale 30%
                      a developer without the right raises it to 30%: Forbidden
                      until a master confirms the change with her own commit
rewards on gcash      pilot finds a blocker; the owner cancels the release        Canceled
rewards on dana       10%, then 50%                                               Grayscale 50%
rewards on tng        straight to full release                                    Released
coupons on dana       nothing: a rollout schedule (5%, soak, analysis, 25%, ...)   Released
coupons on tng        nothing; its crash rate spikes at 10%: the analysis fails   Halted 10%
coupons on gcash      the rollout holds at 10% until Maria runs relctl promote    Released
====================  ==========================================================  ===============

It exits 0 when every release reached its intended final state, 1 otherwise.

With ``BOARD=1`` (``make demo BOARD=1``) the release board is served on 127.0.0.1 for the
whole run, reading the origin's main branch; its address is printed first, and when the demo
ends in a terminal it stays open until Enter or Ctrl-C. Without it the demo is unchanged.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from controller.commands import Command, run_command
from controller.manifests import load_repository
from controller.model import ConditionStatus, ConditionType, Status
from controller.output.table import format_status_table, status_rows
from controller.output.text import rollout_text
from controller.platform.protocol import Stage
from controller.platform.sim import Simulator
from controller.status import read_statuses

if TYPE_CHECKING:
    from controller.board.serve import BoardServer

DEADLINE_SECONDS = 110
SAMPLE_FILES = ("relctl.yaml", "access.yaml", "releases")
ROLLOUT_EXAMPLES = "examples/rollouts/coupons"


# --------------------------------------------------------------------------------------------
# the script: per release, what a person does when the status reaches a given point
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """A developer's commit, made when the release shows ``phase`` (at ``grayscale``)."""

    phase: str
    grayscale: int | None
    edits: dict[str, str]
    words: str
    #: Who commits it, when not the release's owner.
    author: tuple[str, str] | None = None
    #: A rollout command (``relctl promote``) instead of an edit.
    command: Command | None = None


@dataclass
class Script:
    key: str
    author: tuple[str, str]
    moves: list[Move]
    final_phase: str
    final_grayscale: int
    done: set[int] = field(default_factory=set)
    #: The rollout halt it ends in (then Ready is False: it needs a person), if any.
    final_halt: str | None = None


SHOP_OWNER = ("Budi Hartono", "budi.hartono@example.com")
REWARDS_OWNER = ("Aisyah Rahman", "aisyah.rahman@example.com")
#: A developer assigned to rewards only: access.yaml gives him no right on shop.
OUTSIDER = ("Lim Wei", "lim.wei@example.com")
MASTER = ("Maria Santos", "maria.santos@example.com")
REJECTION = "the description must name the wallet the balance is paid from (Touch 'n Go eWallet)"
FIXED_DESCRIPTION = (
    "Browse the catalogue, pay with your Touch 'n Go eWallet balance and track every order."
)

SCRIPTS = [
    Script(
        "shop/gcash",
        SHOP_OWNER,
        [
            Move(
                "PilotTesting",
                None,
                {"complete": "true", "grayscale": "20"},
                "pilot went well: complete testing and release to 20% of GCash users",
            ),
            Move("Grayscale", 20, {"grayscale": "50"}, "no crashes at 20%: raise to 50%"),
            Move("Grayscale", 50, {"grayscale": "100"}, "feedback is good: full release"),
        ],
        "Released",
        100,
    ),
    Script(
        "shop/dana",
        SHOP_OWNER,
        [Move("ReadyToRelease", None, {"grayscale": "100"}, "approved: release to everyone")],
        "Released",
        100,
    ),
    Script(
        "shop/tng",
        SHOP_OWNER,
        [
            Move(
                "Rejected",
                None,
                {"description": FIXED_DESCRIPTION},
                "fix the description the reviewer asked for (basic info only)",
            ),
            Move("ReadyToRelease", None, {"grayscale": "10"}, "approved: start at 10%"),
            Move(
                "Grayscale",
                10,
                {"grayscale": "30"},
                "10% looks fine: raise to 30% (but Lim works on rewards only)",
                author=OUTSIDER,
            ),
            Move(
                "Forbidden",
                None,
                {"slogan": "Everything you need, in one tap"},
                "reviews Lim's change, agrees with 30% and confirms it with her own commit",
                author=MASTER,
            ),
        ],
        "Grayscale",
        30,
    ),
    Script(
        "rewards/gcash",
        REWARDS_OWNER,
        [
            Move(
                "PilotTesting",
                None,
                {"cancel": "true"},
                "pilot testers found a points-rounding bug: cancel this version",
            )
        ],
        "Canceled",
        0,
    ),
    Script(
        "rewards/dana",
        REWARDS_OWNER,
        [
            Move("ReadyToRelease", None, {"grayscale": "10"}, "approved: start at 10%"),
            Move("Grayscale", 10, {"grayscale": "50"}, "10% looks fine: raise to 50%"),
        ],
        "Grayscale",
        50,
    ),
    Script(
        "rewards/tng",
        REWARDS_OWNER,
        [Move("ReadyToRelease", None, {"grayscale": "100"}, "approved: release to everyone")],
        "Released",
        100,
    ),
    Script("coupons/dana", MASTER, [], "Released", 100),
    Script("coupons/tng", MASTER, [], "Halted", 10, final_halt="AnalysisFailed"),
    Script(
        "coupons/gcash",
        MASTER,
        [
            Move(
                "Halted",
                10,
                {},
                "10% looks healthy: relctl promote coupons gcash",
                command=Command.PROMOTE,
            )
        ],
        "Released",
        100,
    ),
]


def edit_manifest(text: str, edits: dict[str, str]) -> str:
    """Change scalar fields of a manifest in place, keeping comments and layout."""
    for key, value in edits.items():
        pattern = re.compile(rf"^(\s+{re.escape(key)}:\s*).*$", re.MULTILINE)
        replacement = value.replace("\\", "\\\\")
        text, count = pattern.subn(rf"\g<1>{replacement}", text, count=1)
        if count != 1:
            raise RuntimeError(f"demo manifest has no {key!r} field to edit")
    return text


# --------------------------------------------------------------------------------------------
# plumbing: git as a person uses it, output a person can follow
# --------------------------------------------------------------------------------------------

_print_lock = threading.Lock()
_started = time.monotonic()


def say(who: str, text: str) -> None:
    with _print_lock:
        print(f"{time.monotonic() - _started:6.1f}s  {who:<11} {text}", flush=True)


def git(cwd: Path, *args: str, author: tuple[str, str] | None = None) -> str:
    env = dict(os.environ)
    name, email = author or ("Demo Setup", "maria.santos@example.com")
    env.update(
        GIT_AUTHOR_NAME=name,
        GIT_AUTHOR_EMAIL=email,
        GIT_COMMITTER_NAME=name,
        GIT_COMMITTER_EMAIL=email,
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
    )
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def push_edit(clone: Path, script: Script, move: Move) -> str:
    """Commit a manifest edit as the release's owner and push it (rebasing on races)."""
    mini_program, target_app = script.key.split("/")
    path = clone / "releases" / mini_program / f"{target_app}.yaml"
    for _attempt in range(10):
        git(clone, "pull", "--quiet", "--rebase", "origin", "main")
        author = move.author or script.author
        if move.command is not None:
            git(clone, "config", "user.name", author[0])
            git(clone, "config", "user.email", author[1])
            run_command(clone, move.command, mini_program, target_app, datetime.now(UTC))
        else:
            path.write_text(edit_manifest(path.read_text(), move.edits))
            git(clone, "commit", "--quiet", "-am", f"{script.key}: {move.words}", author=author)
        try:
            git(clone, "push", "--quiet", "origin", "HEAD:main")
            return git(clone, "rev-parse", "--short", "HEAD")
        except RuntimeError:
            git(clone, "reset", "--quiet", "--hard", "origin/main")
            time.sleep(0.3)
    raise RuntimeError(f"could not push {script.key}: the remote kept moving")


def setup(root: Path, demo: Path) -> tuple[Path, Path, Simulator]:
    if demo.exists():
        shutil.rmtree(demo)
    demo.mkdir(parents=True)
    seed, origin, team = demo / "seed", demo / "origin.git", demo / "team"
    seed.mkdir()
    for name in SAMPLE_FILES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, seed / name)
        else:
            shutil.copy2(source, seed / name)
    # The rollout examples: coupons on DANA, Touch 'n Go and GCash (docs/rollouts.md).
    shutil.copytree(root / ROLLOUT_EXAMPLES, seed / "releases" / "coupons")
    git(demo, "init", "--quiet", "--bare", "-b", "main", str(origin))
    git(seed, "init", "--quiet", "-b", "main")
    git(seed, "add", "-A")
    git(
        seed, "commit", "--quiet", "-m",
        "Release intents for shop 1.4.0, rewards 2.0.1 and coupons 1.0.0",
    )  # fmt: skip
    git(seed, "push", "--quiet", str(origin), "main")
    git(demo, "clone", "--quiet", str(origin), str(team))

    simulator = Simulator(demo / "platform.db")
    for app, pilot, values in (("gcash", True, ()), ("dana", False, (5, 10, 25, 50, 75))):
        simulator.set_app(
            app, pilot_required=pilot, review="manual", build_seconds=1, test_seconds=1,
            grayscale_values=values,
        )  # fmt: skip
    simulator.set_app(
        "tng", pilot_required=False, review="manual", build_seconds=1, test_seconds=1,
        grayscale_values=(10, 30, 50),
    )  # fmt: skip
    simulator.upload("shop", "1.4.0")
    simulator.upload("rewards", "2.0.1")
    simulator.upload("coupons", "1.0.0")
    return origin, team, simulator


def crash_spike(simulator: Simulator, spiked: set[str]) -> None:
    """coupons 1.0.0 crashes on Touch 'n Go once users have it (scripted feedback)."""
    for snapshot in simulator.releases():
        label = f"{snapshot.mini_program}/{snapshot.target_app}"
        if label == "coupons/tng" and snapshot.stage is Stage.GRAYSCALE and label not in spiked:
            spiked.add(label)
            simulator.set_metrics(snapshot.release_id, crash_rate=7.5, error_rate=0.4)
            say("platform", f"{label}: crash rate 7.5% at {snapshot.grayscale}% (a bad build)")


def reviewer(simulator: Simulator, rejected: set[str]) -> None:
    """The platform's reviewer: approves applications, rejects shop on tng once."""
    for snapshot in simulator.releases():
        if snapshot.stage is not Stage.UNDER_REVIEW:
            continue
        label = f"{snapshot.mini_program}/{snapshot.target_app}"
        if label == "shop/tng" and label not in rejected:
            rejected.add(label)
            simulator.review(snapshot.release_id, approve=False, reason=REJECTION)
            say("reviewer", f"rejects {label} {snapshot.version}: {REJECTION}")
        else:
            simulator.review(snapshot.release_id, approve=True)
            say("reviewer", f"approves {label} {snapshot.version}")


def converged(statuses: dict[str, Status]) -> bool:
    for script in SCRIPTS:
        status = statuses.get(script.key)
        if status is None:
            return False
        ready = status.condition(ConditionType.READY)
        if status.phase != script.final_phase or status.grayscale != script.final_grayscale:
            return False
        if script.final_halt is not None:
            if status.rollout is None or status.rollout.halt != script.final_halt:
                return False
        elif ready is None or ready.status is not ConditionStatus.TRUE:
            return False
    return True


def relay(stream: object, prefix: str, sink: Callable[[str, str], None]) -> threading.Thread:
    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink(prefix, line.rstrip())

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def main() -> int:
    root = Path.cwd()
    demo = root / ".relctl" / "demo"
    print("relctl demo: a release repository, the platform simulator, the controller daemon")
    print("and a scripted team (a reviewer on the platform, two owners pushing to main).\n")
    origin, team, simulator = setup(root, demo)
    anchor = subprocess.run(
        ["git", "rev-parse", "main"], cwd=origin, check=True, capture_output=True, text=True
    ).stdout.strip()
    seeded = (
        f"origin {origin.relative_to(root)} seeded from ./releases and ./{ROLLOUT_EXAMPLES} "
        f"({len(SCRIPTS)} releases)"
    )
    say("setup", seeded)
    say("setup", "simulator: gcash needs pilot testing; builds and tests take 1 s")
    board = start_board(origin) if os.environ.get("BOARD") == "1" else None
    try:
        return run_team(root, demo, origin, team, simulator, anchor)
    finally:
        if board is not None:
            keep_board_open(board)


def start_board(origin: Path) -> BoardServer:
    """The release board over the origin's main branch, on a free port of 127.0.0.1."""
    from controller.board import board_app, repository_source
    from controller.board.serve import BoardServer, bind

    board = BoardServer(board_app(repository_source(origin, "main")), bind("127.0.0.1", 0))
    board.start()
    say("board", f"the release board: {board.url} (open it in a browser)")
    return board


def keep_board_open(board: BoardServer) -> None:
    """In a terminal, keep the board open until Enter or Ctrl-C; then stop it."""
    if sys.stdin.isatty():
        print(f"\nThe board stays open at {board.url}: press Enter (or Ctrl-C) to stop it.")
        with contextlib.suppress(KeyboardInterrupt, EOFError):
            input()
    board.stop()


def run_team(
    root: Path, demo: Path, origin: Path, team: Path, simulator: Simulator, anchor: str
) -> int:
    """The controller daemon and the scripted team, until every release has converged."""

    controller = subprocess.Popen(
        [
            sys.executable, "-m", "controller", "run",
            "--remote", origin.as_uri(),
            "--workdir", str(demo / "controller"),
            "--platform", f"sim:{demo / 'platform.db'}",
            "--interval", "1", "--jitter", "0.2",
            "--author-email", "relctl-bot@example.com",
            "--skip-ci",
            # The operator pins where trust starts: the seeded commit, reviewed by a master.
            "--trust-anchor", anchor,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root,
    )  # fmt: skip
    relay(controller.stdout, "controller", say)

    rejected: set[str] = set()
    deadline = time.monotonic() + DEADLINE_SECONDS
    statuses: dict[str, Status] = {}
    ok = False
    try:
        spiked: set[str] = set()
        while time.monotonic() < deadline and controller.poll() is None:
            reviewer(simulator, rejected)
            crash_spike(simulator, spiked)
            git(team, "pull", "--quiet", "--rebase", "origin", "main")
            statuses = {s.key: s for s in read_statuses(team)}
            for script in SCRIPTS:
                status = statuses.get(script.key)
                if status is None:
                    continue
                for index, move in enumerate(script.moves):
                    if index in script.done or status.phase != move.phase:
                        continue
                    if move.grayscale is not None and status.grayscale != move.grayscale:
                        continue
                    script.done.add(index)
                    sha = push_edit(team, script, move)
                    who = (move.author or script.author)[0].split()[0].lower()
                    say(who, f"{script.key}: {move.words} ({sha})")
                    break
            if converged(statuses):
                ok = True
                break
            time.sleep(0.5)
    finally:
        if controller.poll() is None:
            controller.send_signal(signal.SIGTERM)
        try:
            controller.wait(timeout=30)
        except subprocess.TimeoutExpired:
            controller.kill()
        simulator.close()

    git(team, "pull", "--quiet", "--rebase", "origin", "main")
    statuses = {s.key: s for s in read_statuses(team)}
    ok = converged(statuses)
    print("\nrelctl status:\n")
    rows = status_rows(list(statuses.values()), datetime.now(UTC))
    print(format_status_table(rows, width=shutil.get_terminal_size((120, 24)).columns))
    loaded = load_repository(team)
    for release in loaded.releases:
        if release.spec.rollout is not None:
            print(f"\nrelctl status {release.mini_program} {release.target_app}:\n")
            print(rollout_text(release, statuses.get(release.key)), end="")
    print("\nstatus commits written by the controller (git log -- status/):\n")
    print(git(team, "log", "--format=  %h %an: %s", "--", "status/"))
    elapsed = time.monotonic() - _started
    if ok:
        print(f"\nAll {len(SCRIPTS)} releases reached their intended state in {elapsed:.0f} s.")
        print(
            f"Explore: git -C {team.relative_to(root)} log --stat; "
            f"relctl platform --db {(demo / 'platform.db').relative_to(root)} releases"
        )
        return 0
    print("\nThe demo did NOT converge. Intended vs. actual:", file=sys.stderr)
    for script in SCRIPTS:
        status = statuses.get(script.key)
        actual = f"{status.phase} {status.grayscale}%" if status else "no status"
        print(
            f"  {script.key}: want {script.final_phase} {script.final_grayscale}%, got {actual}",
            file=sys.stderr,
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
