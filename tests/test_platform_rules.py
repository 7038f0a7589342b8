"""The simulator enforces the platform's rules: each refusal with its typed error.

Real simulator on a temporary SQLite file, manual clock; nothing is faked.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.platform import open_platform
from controller.platform.errors import (
    Conflict,
    InvalidState,
    LimitExceeded,
    NotEditable,
    NotFound,
    PlatformUnusable,
)
from controller.platform.protocol import (
    CompatibilityStatus,
    Platform,
    ReleaseSnapshot,
    ReviewDecision,
    Stage,
    configuration_digest,
)
from controller.platform.sim import Simulator
from controller.platform.sim.model import bucket, in_grayscale

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TESTER = "2088000000000001"
_keys = itertools.count()


def key() -> str:
    return f"k-{next(_keys)}"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    with Simulator(tmp_path / "platform.db") as simulator:
        simulator.set_clock(manual=True, at=T0)
        simulator.set_app("gcash", build_seconds=10, test_seconds=20, review_after=30)
        simulator.set_app("dana", pilot_required=True, build_seconds=0, test_seconds=0)
        for version in ("1.0.0", "1.1.0", "1.2.0", "2.0.0"):
            simulator.upload("shop", version)
        yield simulator


def create(sim: Simulator, version: str = "1.0.0", app: str = "gcash") -> ReleaseSnapshot:
    return sim.create_release("shop", version, app, "production", idempotency_key=key())


def built(sim: Simulator, version: str = "1.0.0", app: str = "gcash") -> ReleaseSnapshot:
    release = create(sim, version, app)
    sim.advance(10)
    snapshot = sim.get_release(release.release_id)
    assert snapshot.stage is Stage.NEW_VERSION_CREATED
    return snapshot


def run_test(sim: Simulator, release_id: str) -> None:
    sim.run_compatibility_test(release_id, idempotency_key=key())
    sim.advance(20)


def approved(sim: Simulator, version: str = "1.0.0", app: str = "gcash") -> ReleaseSnapshot:
    """A release in RELEASE_PREPARATION (gcash) or PILOT_TESTING (dana)."""
    release = built(sim, version, app)
    run_test(sim, release.release_id)
    sim.apply(release.release_id, idempotency_key=key())
    sim.advance(30)
    return sim.get_release(release.release_id)


def released(sim: Simulator, version: str = "1.0.0") -> ReleaseSnapshot:
    release = approved(sim, version)
    return sim.full_release(release.release_id, idempotency_key=key())


# --- the happy path and time ----------------------------------------------------------------------


def test_simulator_implements_the_platform_protocol(sim: Simulator) -> None:
    assert isinstance(sim, Platform)


def test_open_platform_opens_the_simulator_and_refuses_unknown_schemes(tmp_path: Path) -> None:
    Simulator(tmp_path / "p.db").close()
    platform = open_platform(f"sim:{tmp_path}/p.db")
    assert isinstance(platform, Simulator)
    platform.close()
    with pytest.raises(PlatformUnusable, match="no platform simulator database at"):
        open_platform(f"sim:{tmp_path}/typo.db")
    assert not (tmp_path / "typo.db").exists()
    with pytest.raises(ValueError, match="unknown platform adapter 'ftp://x'"):
        open_platform("ftp://x")
    with pytest.raises(ValueError, match="needs a database path"):
        open_platform("sim:")


def test_build_finishes_after_build_seconds_on_the_simulator_clock(sim: Simulator) -> None:
    release = create(sim)
    assert release.stage is Stage.BUILDING
    assert release.release_id == "R-000001"
    sim.advance(9)
    assert sim.get_release(release.release_id).stage is Stage.BUILDING
    sim.advance(1)
    snapshot = sim.get_release(release.release_id)
    assert snapshot.stage is Stage.NEW_VERSION_CREATED
    # stamped with the deadline, not with the moment someone looked
    assert snapshot.stage_times[Stage.NEW_VERSION_CREATED] == T0 + timedelta(seconds=10)
    sim.advance(100)
    assert sim.get_release(release.release_id).stage_times == snapshot.stage_times


def test_a_version_uploaded_with_build_failure_fails_its_build(sim: Simulator) -> None:
    sim.upload("shop", "3.0.0", build_fails=True)
    release = create(sim, "3.0.0")
    sim.advance(10)
    assert sim.get_release(release.release_id).stage is Stage.BUILD_FAILED
    with pytest.raises(NotEditable, match="build failed"):
        sim.update_configuration(release.release_id, {}, idempotency_key=key())


def test_full_walk_through_pilot_grayscale_and_full_release(sim: Simulator) -> None:
    release = approved(sim, app="dana")
    assert release.stage is Stage.PILOT_TESTING
    assert release.review is not None and release.review.pilot_required
    assert release.review.decision is ReviewDecision.APPROVED
    change = sim.set_testers(release.release_id, [TESTER], idempotency_key=key())
    assert change.added == (TESTER,) and change.removed == ()
    assert sim.who_gets("shop", "dana", TESTER) == "1.0.0"
    sim.complete_testing(release.release_id, idempotency_key=key())
    snapshot = sim.set_grayscale(release.release_id, 20, idempotency_key=key())
    assert (snapshot.stage, snapshot.grayscale) == (Stage.GRAYSCALE, 20)
    snapshot = sim.set_grayscale(release.release_id, 100, idempotency_key=key())
    assert (snapshot.stage, snapshot.grayscale) == (Stage.FULL_RELEASE, 100)
    qr = sim.create_qr_code(release.release_id, idempotency_key=key())
    assert "appId=shop" in qr.url and "version=1.0.0" in qr.url and "target=dana" in qr.url
    assert qr.svg.startswith("<svg")
    assert sim.get_release(release.release_id).qr_code == qr
    assert sim.get_feedback(release.release_id).users_on_version == 100_000
    assert set(sim.get_release(release.release_id).stage_times) == {
        Stage.BUILDING,
        Stage.NEW_VERSION_CREATED,
        Stage.UNDER_REVIEW,
        Stage.PILOT_TESTING,
        Stage.RELEASE_PREPARATION,
        Stage.GRAYSCALE,
        Stage.FULL_RELEASE,
    }


def test_approval_without_pilot_goes_to_release_preparation(sim: Simulator) -> None:
    release = approved(sim)
    assert release.stage is Stage.RELEASE_PREPARATION
    assert release.review is not None and not release.review.pilot_required


LOWER = "is lower than 2.0.0, the newest uploaded version of shop: versions only increase"
AGAIN = "is already uploaded; the newest uploaded version of shop is 2.0.0"
GREATER = "upload a version greater than 2.0.0, e.g. 2.0.1"


@pytest.mark.parametrize(
    ("version", "refusal"),
    [
        ("1.5.0", f"shop 1.5.0 {LOWER}; {GREATER}"),
        ("0.9.0", f"shop 0.9.0 {LOWER}; {GREATER}"),
        ("1.1.0", f"shop 1.1.0 {AGAIN}: {GREATER}"),
        ("2.0.0", f"shop 2.0.0 {AGAIN}: {GREATER}"),
    ],
)
def test_an_upload_not_newer_than_the_newest_version_is_refused_naming_it(
    sim: Simulator, version: str, refusal: str
) -> None:
    with pytest.raises(Conflict) as refused:
        sim.upload("shop", version)
    assert str(refused.value) == refusal
    assert [v.version for v in sim.versions("shop")] == ["1.0.0", "1.1.0", "1.2.0", "2.0.0"]


def test_uploaded_versions_increase_numerically_and_per_mini_program(sim: Simulator) -> None:
    sim.upload("shop", "2.0.1")
    sim.upload("shop", "2.10.0")  # 10 > 9 > 1: numbers, not text
    sim.upload("pay", "0.1.0")  # another mini program has its own versions
    with pytest.raises(Conflict, match=r"lower than 2\.10\.0"):
        sim.upload("shop", "2.9.0")
    assert sim.get_version("shop", "2.9.0") is None
    assert sim.get_version("pay", "0.1.0") is not None


def test_get_version_tells_whether_a_version_was_uploaded(sim: Simulator) -> None:
    info = sim.get_version("shop", "1.0.0")
    assert info is not None and info.uploaded_at == T0
    assert sim.get_version("shop", "9.9.9") is None
    with pytest.raises(Conflict, match="already uploaded"):
        sim.upload("shop", "1.0.0")
    with pytest.raises(ValueError, match=r"x\.y\.z"):
        sim.upload("shop", "1.0")


# --- rules: creating releases ---------------------------------------------------------------------


def test_release_of_an_unconfigured_target_app_is_refused(sim: Simulator) -> None:
    with pytest.raises(NotFound, match="relctl platform set-app tng"):
        create(sim, app="tng")


def test_release_of_a_version_never_uploaded_is_refused(sim: Simulator) -> None:
    with pytest.raises(NotFound, match="has not been uploaded"):
        create(sim, "9.9.9")


def test_a_version_goes_to_a_target_once(sim: Simulator) -> None:
    released(sim)
    with pytest.raises(Conflict, match="already released to gcash as R-000001"):
        create(sim)


def test_a_canceled_release_can_never_be_redone(sim: Simulator) -> None:
    release = built(sim)
    sim.cancel(release.release_id, idempotency_key=key())
    with pytest.raises(Conflict, match="can never be redone"):
        create(sim)


def test_only_one_release_in_flight_per_target(sim: Simulator) -> None:
    first = built(sim)
    with pytest.raises(Conflict, match=r"cancel release R-000001 \(1.0.0\) first"):
        create(sim, "1.1.0")
    # another target app is independent
    assert create(sim, "1.1.0", "dana").stage is Stage.NEW_VERSION_CREATED
    sim.cancel(first.release_id, idempotency_key=key())
    assert create(sim, "1.1.0").stage is Stage.BUILDING


def test_versions_must_strictly_increase_on_a_target(sim: Simulator) -> None:
    released(sim, "1.1.0")
    with pytest.raises(Conflict, match=r"not newer than 1\.1\.0"):
        create(sim, "1.0.0")
    assert create(sim, "1.2.0").stage is Stage.BUILDING


# --- rules: configuration, compatibility, apply ---------------------------------------------------


def test_configuration_cannot_change_while_building(sim: Simulator) -> None:
    release = create(sim)
    with pytest.raises(InvalidState, match="still building"):
        sim.update_configuration(release.release_id, {"a": 1}, idempotency_key=key())


def test_only_basic_info_is_editable_after_applying(sim: Simulator) -> None:
    release = built(sim)
    run_test(sim, release.release_id)
    sim.apply(release.release_id, idempotency_key=key())
    with pytest.raises(NotEditable, match="withdraw the application first"):
        sim.update_configuration(release.release_id, {"a": 1}, idempotency_key=key())
    info = {"name": "Shop", "description": "Buy things"}
    snapshot = sim.update_basic_info(release.release_id, info, idempotency_key=key())
    assert snapshot.basic_info == info and snapshot.stage is Stage.UNDER_REVIEW


def test_configuration_is_editable_again_after_withdrawal(sim: Simulator) -> None:
    release = built(sim)
    run_test(sim, release.release_id)
    sim.apply(release.release_id, idempotency_key=key())
    snapshot = sim.withdraw(release.release_id, idempotency_key=key())
    assert snapshot.stage is Stage.NEW_VERSION_CREATED
    sim.update_configuration(release.release_id, {"a": 1}, idempotency_key=key())
    # the old report no longer matches the configuration
    with pytest.raises(InvalidState, match="run a compatibility test first"):
        sim.apply(release.release_id, idempotency_key=key())


def test_withdraw_only_under_review(sim: Simulator) -> None:
    release = built(sim)
    with pytest.raises(InvalidState, match="only an application under review"):
        sim.withdraw(release.release_id, idempotency_key=key())


def test_configuration_is_editable_again_after_rejection(sim: Simulator) -> None:
    sim.set_app("gcash", review="manual")
    release = built(sim)
    run_test(sim, release.release_id)
    sim.apply(release.release_id, idempotency_key=key())
    sim.advance(3600)
    assert sim.get_release(release.release_id).stage is Stage.UNDER_REVIEW  # manual: waits
    rejected = sim.review(release.release_id, approve=False, reason="logo is blurry")
    assert rejected.stage is Stage.REJECTED
    assert rejected.review is not None and rejected.review.reason == "logo is blurry"
    snapshot = sim.update_configuration(release.release_id, {"a": 2}, idempotency_key=key())
    assert snapshot.stage is Stage.REJECTED
    run_test(sim, release.release_id)
    assert sim.apply(release.release_id, idempotency_key=key()).stage is Stage.UNDER_REVIEW


def test_apply_needs_a_finished_report_for_the_current_configuration(sim: Simulator) -> None:
    release = built(sim)
    with pytest.raises(InvalidState, match="run a compatibility test first"):
        sim.apply(release.release_id, idempotency_key=key())
    sim.run_compatibility_test(release.release_id, idempotency_key=key())
    with pytest.raises(InvalidState, match="still running"):
        sim.apply(release.release_id, idempotency_key=key())
    with pytest.raises(InvalidState, match="already running"):
        sim.run_compatibility_test(release.release_id, idempotency_key=key())
    sim.advance(20)
    assert sim.apply(release.release_id, idempotency_key=key()).stage is Stage.UNDER_REVIEW


def test_compatibility_report_covers_the_matrix_and_chosen_failures(sim: Simulator) -> None:
    sim.upload("shop", "3.0.0", compat_failures="ios:3g")
    release = built(sim, "3.0.0")
    sim.update_configuration(release.release_id, {"theme": "dark"}, idempotency_key=key())
    running = sim.run_compatibility_test(release.release_id, idempotency_key=key())
    assert running.compatibility is not None
    assert running.compatibility.status is CompatibilityStatus.RUNNING
    sim.advance(20)
    report = sim.get_release(release.release_id).compatibility
    assert report is not None and report.status is CompatibilityStatus.FINISHED
    assert len(report.cases) == 24
    failed = {(c.os, c.network) for c in report.cases if not c.passed}
    assert failed == {("ios", "3g")}
    assert report.pass_rate == 87.5
    assert report.configuration_digest == configuration_digest({"theme": "dark"})
    assert report.report_id.startswith("C-")


def test_compatibility_test_only_before_applying(sim: Simulator) -> None:
    release = approved(sim)
    with pytest.raises(InvalidState, match="compatibility tests run in"):
        sim.run_compatibility_test(release.release_id, idempotency_key=key())


# --- rules: review --------------------------------------------------------------------------------


def test_rules_review_rejects_an_empty_description(sim: Simulator) -> None:
    sim.set_app("gcash", review="rules", banned_words=("free money",))
    release = built(sim)
    run_test(sim, release.release_id)
    sim.apply(release.release_id, idempotency_key=key())
    sim.advance(30)
    snapshot = sim.get_release(release.release_id)
    assert snapshot.stage is Stage.REJECTED
    assert snapshot.review is not None and "description is empty" in snapshot.review.reason


def test_rules_review_rejects_a_banned_word_and_approves_clean_basic_info(sim: Simulator) -> None:
    sim.set_app("gcash", review="rules", banned_words=("free money",))
    release = built(sim)
    info = {"name": "Shop", "description": "Get FREE MONEY now"}
    sim.update_basic_info(release.release_id, info, idempotency_key=key())
    run_test(sim, release.release_id)
    sim.apply(release.release_id, idempotency_key=key())
    sim.advance(30)
    snapshot = sim.get_release(release.release_id)
    assert snapshot.review is not None and "'free money'" in snapshot.review.reason
    sim.update_basic_info(release.release_id, {"description": "A shop"}, idempotency_key=key())
    sim.apply(release.release_id, idempotency_key=key())
    sim.advance(30)
    assert sim.get_release(release.release_id).stage is Stage.RELEASE_PREPARATION


def test_review_command_only_under_review(sim: Simulator) -> None:
    release = built(sim)
    with pytest.raises(InvalidState):
        sim.review(release.release_id, approve=True)
    with pytest.raises(ValueError, match="needs a reason"):
        sim.review(release.release_id, approve=False, reason=" ")


# --- rules: pilot testing -------------------------------------------------------------------------


def test_testers_only_during_pilot_testing(sim: Simulator) -> None:
    release = approved(sim)  # gcash: no pilot
    with pytest.raises(InvalidState, match="only during pilot testing"):
        sim.set_testers(release.release_id, [TESTER], idempotency_key=key())


def test_testers_within_the_limit(sim: Simulator) -> None:
    sim.set_app("dana", testers_max=2)
    release = approved(sim, app="dana")
    testers = [f"20880000000000{i:02d}" for i in range(3)]
    with pytest.raises(LimitExceeded, match="at most 2"):
        sim.set_testers(release.release_id, testers, idempotency_key=key())
    change = sim.set_testers(release.release_id, testers[:2], idempotency_key=key())
    assert change.added == tuple(testers[:2])
    change = sim.set_testers(release.release_id, testers[1:], idempotency_key=key())
    assert change == type(change)(added=(testers[2],), removed=(testers[0],))


def test_tester_ids_must_be_user_ids_of_the_app(sim: Simulator) -> None:
    release = approved(sim, app="dana")
    with pytest.raises(NotFound, match="not dana user ids"):
        sim.set_testers(release.release_id, ["alice"], idempotency_key=key())


def test_complete_testing_only_in_pilot(sim: Simulator) -> None:
    release = approved(sim)
    with pytest.raises(InvalidState, match="only during pilot testing"):
        sim.complete_testing(release.release_id, idempotency_key=key())


def test_cancel_testing_is_final(sim: Simulator) -> None:
    release = approved(sim, app="dana")
    snapshot = sim.cancel(release.release_id, idempotency_key=key())
    assert snapshot.stage is Stage.CANCELED
    with pytest.raises(NotEditable, match="canceling is final"):
        sim.complete_testing(release.release_id, idempotency_key=key())
    with pytest.raises(NotEditable, match="canceling is final"):
        sim.cancel(release.release_id, idempotency_key=key())


# --- rules: grayscale and full release ------------------------------------------------------------


def test_grayscale_only_rises(sim: Simulator) -> None:
    release = approved(sim)
    sim.set_grayscale(release.release_id, 30, idempotency_key=key())
    with pytest.raises(InvalidState, match="only rises"):
        sim.set_grayscale(release.release_id, 20, idempotency_key=key())
    with pytest.raises(InvalidState, match="only rises"):
        sim.set_grayscale(release.release_id, 30, idempotency_key=key())
    assert sim.get_release(release.release_id).grayscale == 30


def test_grayscale_only_to_allowed_values(sim: Simulator) -> None:
    sim.set_app("gcash", grayscale_values=(10, 30, 50))
    release = approved(sim)
    with pytest.raises(LimitExceeded, match="allowed: 10,30,50,100"):
        sim.set_grayscale(release.release_id, 20, idempotency_key=key())
    with pytest.raises(LimitExceeded):
        sim.set_grayscale(release.release_id, 0, idempotency_key=key())
    assert sim.set_grayscale(release.release_id, 10, idempotency_key=key()).grayscale == 10


def test_grayscale_before_release_preparation_is_refused(sim: Simulator) -> None:
    release = built(sim)
    with pytest.raises(InvalidState, match="grayscale release is possible from"):
        sim.set_grayscale(release.release_id, 10, idempotency_key=key())


def test_full_release_only_from_release_preparation_or_grayscale(sim: Simulator) -> None:
    release = built(sim)
    with pytest.raises(InvalidState, match="full release is possible from"):
        sim.full_release(release.release_id, idempotency_key=key())
    pilot = approved(sim, app="dana")
    with pytest.raises(InvalidState):
        sim.full_release(pilot.release_id, idempotency_key=key())


def test_a_newer_full_release_archives_the_older_one(sim: Simulator) -> None:
    old = released(sim, "1.0.0")
    new = approved(sim, "1.1.0")  # a full release is not "in flight"
    sim.set_grayscale(new.release_id, 50, idempotency_key=key())
    assert sim.get_release(old.release_id).stage is Stage.FULL_RELEASE
    sim.full_release(new.release_id, idempotency_key=key())
    assert sim.get_release(old.release_id).stage is Stage.ARCHIVED
    stages = [r.stage for r in sim.find_releases("shop", "gcash")]
    assert stages == [Stage.ARCHIVED, Stage.FULL_RELEASE]
    with pytest.raises(NotEditable, match="newer version replaced it"):
        sim.update_basic_info(old.release_id, {}, idempotency_key=key())


def test_a_full_release_cannot_be_canceled_nor_its_basic_info_changed(sim: Simulator) -> None:
    release = released(sim)
    with pytest.raises(InvalidState, match="cannot be canceled"):
        sim.cancel(release.release_id, idempotency_key=key())
    with pytest.raises(NotEditable, match="editable only until full release"):
        sim.update_basic_info(release.release_id, {"name": "x"}, idempotency_key=key())


def test_qr_code_only_for_released_versions(sim: Simulator) -> None:
    release = approved(sim)
    with pytest.raises(InvalidState, match="QR codes exist for released"):
        sim.create_qr_code(release.release_id, idempotency_key=key())


def test_unknown_release_is_not_found(sim: Simulator) -> None:
    with pytest.raises(NotFound, match="R-999999"):
        sim.get_release("R-999999")
    with pytest.raises(NotFound):
        sim.cancel("R-999999", idempotency_key=key())


# --- grayscale exposure ---------------------------------------------------------------------------


def test_bucket_is_stable_and_within_1_to_100() -> None:
    buckets = [bucket("shop", f"2088{i:012d}") for i in range(2000)]
    assert all(1 <= b <= 100 for b in buckets)
    assert bucket("shop", "u1") == bucket("shop", "u1")
    share = sum(b <= 30 for b in buckets) / len(buckets)
    assert 0.25 < share < 0.35


def test_raising_grayscale_never_drops_a_user() -> None:
    users = [f"2088{i:012d}" for i in range(500)]
    previous: set[str] = set()
    for percent in range(0, 101):
        exposed = {u for u in users if in_grayscale("shop", u, percent)}
        assert previous <= exposed
        previous = exposed
    assert previous == set(users)


def test_who_gets_follows_the_grayscale(sim: Simulator) -> None:
    released(sim, "1.0.0")
    new = approved(sim, "1.1.0")
    users = [f"2088{i:012d}" for i in range(200)]
    assert {sim.who_gets("shop", "gcash", u) for u in users} == {"1.0.0"}
    sim.set_grayscale(new.release_id, 30, idempotency_key=key())
    on_new = {u for u in users if sim.who_gets("shop", "gcash", u) == "1.1.0"}
    assert on_new == {u for u in users if bucket("shop", u) <= 30}
    sim.set_grayscale(new.release_id, 60, idempotency_key=key())
    assert on_new <= {u for u in users if sim.who_gets("shop", "gcash", u) == "1.1.0"}
    assert sim.who_gets("shop", "dana", users[0]) is None


def test_feedback_reports_metrics_and_users_on_the_version(sim: Simulator) -> None:
    release = approved(sim)
    sim.set_grayscale(release.release_id, 20, idempotency_key=key())
    sim.set_metrics(release.release_id, crash_rate=1.5)
    feedback = sim.get_feedback(release.release_id)
    assert feedback.crash_rate == 1.5
    assert feedback.users_on_version == 20_000


# --- clock ----------------------------------------------------------------------------------------


def test_manual_clock_is_persisted_for_every_process(sim: Simulator) -> None:
    sim.advance(90)
    with Simulator(sim.path) as other:
        assert other.now() == T0 + timedelta(seconds=90)
        other.advance(10)
    assert sim.now() == T0 + timedelta(seconds=100)


def test_real_clock_never_runs_backward(sim: Simulator) -> None:
    future = datetime.now(UTC) + timedelta(days=1)
    sim.set_clock(manual=True, at=future)
    sim.set_clock(manual=False)
    assert sim.now() >= future
