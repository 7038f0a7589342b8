"""Random operation sequences never reach a state the platform's rules forbid.

A hypothesis ``RuleBasedStateMachine`` drives the real simulator (fresh SQLite file per run,
manual clock it advances) with every adapter call, the reviewer's decisions and clock moves,
in any order and with any arguments. Refusals (``PlatformError``) are expected; anything else
is a bug. After every step the invariants of DESIGN 4.1 must hold.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from controller.platform.errors import PlatformError
from controller.platform.protocol import ReleaseSnapshot, Stage
from controller.platform.rules import FINAL_STAGES, TRANSITIONS, Version
from controller.platform.sim import Simulator

S = Stage
#: DESIGN 4.1, plus what the platform also allows: cancel before pilot testing, withdraw an
#: application (back to NEW_VERSION_CREATED), and re-apply after a rejection.
ALLOWED: dict[Stage, set[Stage]] = {
    S.BUILDING: {S.BUILD_FAILED, S.NEW_VERSION_CREATED, S.CANCELED},
    S.NEW_VERSION_CREATED: {S.UNDER_REVIEW, S.CANCELED},
    S.UNDER_REVIEW: {
        S.REJECTED,
        S.PILOT_TESTING,
        S.RELEASE_PREPARATION,
        S.NEW_VERSION_CREATED,
        S.CANCELED,
    },
    S.REJECTED: {S.UNDER_REVIEW, S.CANCELED},
    S.PILOT_TESTING: {S.RELEASE_PREPARATION, S.CANCELED},
    S.RELEASE_PREPARATION: {S.GRAYSCALE, S.FULL_RELEASE, S.CANCELED},
    S.GRAYSCALE: {S.GRAYSCALE, S.FULL_RELEASE, S.CANCELED},
    S.FULL_RELEASE: {S.ARCHIVED},
    S.BUILD_FAILED: set(),
    S.CANCELED: set(),
    S.ARCHIVED: set(),
}
IN_FLIGHT = set(Stage) - FINAL_STAGES - {Stage.FULL_RELEASE}

MINI_PROGRAMS = ("shop", "pay")
TARGETS = ("gcash", "dana", "tng")
VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "2.0.0", "2.1.0", "3.0.0")
TESTERS = ("2088000000000001", "2088000000000002", "2088000000000003", "bob")


def test_the_rules_table_allows_exactly_the_transitions_this_test_checks() -> None:
    assert {stage: set(targets) for stage, targets in TRANSITIONS.items()} == ALLOWED


def _reachable(old: Stage, new: Stage) -> bool:
    """``new`` follows ``old`` by at most two allowed transitions (one call plus one
    time-driven change, e.g. a build finishing or an automatic review)."""
    if new == old or new in ALLOWED[old]:
        return True
    return any(new in ALLOWED[mid] for mid in ALLOWED[old])


class PlatformMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="relctl-sm-"))
        self.sim = Simulator(self.dir / "platform.db")
        self.sim.set_clock(manual=True, at=datetime(2025, 1, 1, tzinfo=UTC))
        self.sim.set_app("gcash", build_seconds=10, test_seconds=20, review_after=30)
        self.sim.set_app(
            "dana",
            pilot_required=True,
            review="manual",
            testers_max=2,
            grayscale_values=(10, 30, 50),
        )
        self.sim.set_app("tng", review="rules", build_seconds=0, test_seconds=0, review_after=5)
        for mini_program in MINI_PROGRAMS:
            for version in VERSIONS:
                self.sim.upload(
                    mini_program,
                    version,
                    build_fails=version == "2.0.0" and mini_program == "pay",
                    compat_failures="ios:3g" if version == "1.1.0" else (),
                )
        self.keys = itertools.count()
        self.seen: dict[str, ReleaseSnapshot] = {}
        self.reached: set[str] = set()
        #: successful calls (name, args, key) to replay later
        self.done: list[tuple[str, tuple[object, ...], str]] = []
        #: the releases as last read, None once the platform may have changed since
        self.read: list[ReleaseSnapshot] | None = None

    def teardown(self) -> None:
        for stage in sorted(self.reached):
            event(f"reached {stage}")  # shown by --hypothesis-show-statistics
        self.sim.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers ----------------------------------------------------------------------------
    def _releases(self) -> list[ReleaseSnapshot]:
        """The platform's releases, read once per change: reading costs more than a step."""
        if self.read is None:
            self.read = self.sim.releases()
        return self.read

    def _advance(self, seconds: int) -> None:
        self.read = None
        self.sim.advance(seconds)

    def _review(self, release_id: str, approve: bool, reason: str = "") -> None:
        self.read = None
        self.sim.review(release_id, approve, reason)

    def _call(self, name: str, *args: object) -> None:
        self.read = None  # re-read after every call, refused or not
        key = f"k{next(self.keys)}"
        try:
            getattr(self.sim, name)(*args, idempotency_key=key)
        except PlatformError:
            return
        self.done.append((name, args, key))

    def _release(self, index: int) -> str | None:
        releases = self._releases()
        return releases[index % len(releases)].release_id if releases else None

    # --- rules ----------------------------------------------------------------------------------
    @rule(
        mini_program=st.sampled_from(MINI_PROGRAMS),
        version=st.sampled_from(VERSIONS),
        app=st.sampled_from(TARGETS),
    )
    def create_release(self, mini_program: str, version: str, app: str) -> None:
        self._call("create_release", mini_program, version, app, "production")

    @rule(seconds=st.sampled_from([0, 1, 5, 10, 20, 30, 100]))
    def advance(self, seconds: int) -> None:
        self._advance(seconds)

    @rule(index=st.integers(0, 20), config=st.sampled_from([{}, {"a": 1}, {"a": 2}]))
    def update_configuration(self, index: int, config: dict[str, int]) -> None:
        if (release_id := self._release(index)) is not None:
            self._call("update_configuration", release_id, config)

    @rule(index=st.integers(0, 20), description=st.sampled_from(["", "A shop"]))
    def update_basic_info(self, index: int, description: str) -> None:
        if (release_id := self._release(index)) is not None:
            self._call("update_basic_info", release_id, {"description": description})

    @rule(
        index=st.integers(0, 20),
        action=st.sampled_from(
            [
                "run_compatibility_test",
                "apply",
                "withdraw",
                "complete_testing",
                "cancel",
                "full_release",
                "create_qr_code",
            ]
        ),
    )
    def release_action(self, index: int, action: str) -> None:
        if (release_id := self._release(index)) is not None:
            self._call(action, release_id)

    @rule(index=st.integers(0, 20), testers=st.lists(st.sampled_from(TESTERS), max_size=4))
    def set_testers(self, index: int, testers: list[str]) -> None:
        if (release_id := self._release(index)) is not None:
            self._call("set_testers", release_id, testers)

    @rule(index=st.integers(0, 20), percent=st.sampled_from([0, 1, 10, 20, 30, 50, 99, 100]))
    def set_grayscale(self, index: int, percent: int) -> None:
        if (release_id := self._release(index)) is not None:
            self._call("set_grayscale", release_id, percent)

    @rule(index=st.integers(0, 20), approve=st.booleans())
    def review(self, index: int, approve: bool) -> None:
        if (release_id := self._release(index)) is not None:
            with contextlib.suppress(PlatformError):
                self._review(release_id, approve, "" if approve else "not good enough")

    @initialize(mini_program=st.sampled_from(MINI_PROGRAMS))
    def start_one_release_per_target(self, mini_program: str) -> None:
        for app in TARGETS:
            self._call("create_release", mini_program, "1.0.0", app, "production")

    @rule(
        index=st.integers(0, 20),
        percent=st.sampled_from([10, 30, 50, 100]),
        steps=st.integers(1, 8),
    )
    def next_natural_steps(self, index: int, percent: int, steps: int) -> None:
        """What a person would do next; keeps the random walk reaching the late stages."""
        for _ in range(steps):
            releases = self._releases()
            self._natural_step(releases[index % len(releases)], percent)
            self.rules_hold()  # every intermediate state is checked too

    def _natural_step(self, release: ReleaseSnapshot, percent: int) -> None:
        rid = release.release_id
        report = release.compatibility
        if release.stage in (Stage.NEW_VERSION_CREATED, Stage.REJECTED):
            if not release.basic_info.get("description"):
                self._call("update_basic_info", rid, {"description": "A shop"})
            if report is None or report.finished_at is None:
                self._call("run_compatibility_test", rid)
            else:
                self._call("apply", rid)
        elif release.stage is Stage.UNDER_REVIEW:
            self._advance(30)
            if self.sim.get_release(rid).stage is Stage.UNDER_REVIEW:
                self._review(rid, True)
        elif release.stage is Stage.PILOT_TESTING:
            self._call("set_testers", rid, list(TESTERS[:2]))
            self._call("complete_testing", rid)
        elif release.stage in (Stage.RELEASE_PREPARATION, Stage.GRAYSCALE):
            self._call("set_grayscale", rid, percent)
        elif release.stage is Stage.BUILDING:
            self._advance(10)
        elif release.stage is Stage.FULL_RELEASE:  # next version, which will archive this one
            newer = [v for v in VERSIONS if Version.parse(v) > Version.parse(release.version)]
            if newer:
                self._call(
                    "create_release", release.mini_program, newer[0], release.target_app, "prod"
                )

    @precondition(lambda self: bool(self.done))
    @rule(pick=st.integers(0, 1000))
    def replay_is_a_no_op(self, pick: int) -> None:
        name, args, key = self.done[pick % len(self.done)]
        before = self._releases()
        getattr(self.sim, name)(*args, idempotency_key=key)
        self.read = self.sim.releases()
        assert self.read == before

    # --- invariants -------------------------------------------------------------------------------
    @invariant()
    def rules_hold(self) -> None:
        releases = self._releases()
        by_target: dict[tuple[str, str], list[ReleaseSnapshot]] = defaultdict(list)
        for release in releases:
            by_target[(release.mini_program, release.target_app)].append(release)
            before = self.seen.get(release.release_id)
            if before is not None:
                assert _reachable(before.stage, release.stage), (before.stage, release.stage)
                if before.stage in FINAL_STAGES:
                    assert release.stage == before.stage  # canceled stays canceled
                if release.stage not in (Stage.CANCELED, Stage.ARCHIVED):
                    assert release.grayscale >= before.grayscale  # grayscale never decreases
            if release.stage is Stage.GRAYSCALE:
                assert 0 < release.grayscale < 100
            if release.stage is Stage.FULL_RELEASE:
                assert release.grayscale == 100
            self.seen[release.release_id] = release
            self.reached.add(str(release.stage))
        for group in by_target.values():
            assert sum(r.stage in IN_FLIGHT for r in group) <= 1
            assert sum(r.stage is Stage.FULL_RELEASE for r in group) <= 1
            versions = [Version.parse(r.version) for r in group]
            assert versions == sorted(set(versions))  # strictly increasing, once each


PlatformMachine.TestCase.settings = settings(  # examples: the profile's (tests/conftest.py)
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_platform_state_machine = PlatformMachine.TestCase
