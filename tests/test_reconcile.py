"""Multi-pass scenarios of the controller with real git remotes and the real simulator.

Only the clock is fake: the simulator's manual clock, which the controller reads too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from controller_world import World, make_world, manifest
from gitutil import assert_fast_forward_only, isolate_git, remote_log

from controller.model import ConditionStatus, ConditionType, Phase, Status
from controller.platform.protocol import Stage
from controller.reconcile import MESSAGE_LINES, PassCache, ReleaseResult, commit_message

GCASH = "releases/shop/gcash.yaml"
DANA = "releases/shop/dana.yaml"


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


def phase_is(key: str, phase: Phase, grayscale: int | None = None):  # type: ignore[no-untyped-def]
    def done(statuses: dict[str, Status]) -> bool:
        status = statuses.get(key)
        return (
            status is not None
            and status.phase == phase
            and (grayscale is None or status.grayscale == grayscale)
        )

    return done


def ready(status: Status) -> bool:
    condition = status.condition(ConditionType.READY)
    return condition is not None and condition.status is ConditionStatus.TRUE


def test_first_pass_creates_the_release_and_commits_its_status(tmp_path: Path) -> None:
    with make_world(tmp_path, {GCASH: manifest()}) as world:
        result = world.pass_once()

        assert result.pushed is not None
        (release,) = world.simulator.releases()
        assert (release.version, release.target_app, release.stage) == (
            "1.4.0",
            "gcash",
            Stage.BUILDING,
        )
        status = world.statuses()["shop/gcash"]
        assert status.phase is Phase.BUILDING
        assert status.release_id == release.release_id
        assert status.observed_commit == result.commit
        head = remote_log(world.remote)[0]
        assert head.author.startswith("relctl")
        assert f"Relctl-Observed-Commit: {result.commit}" in head.message
        assert "shop/gcash" in head.message


def test_pilot_then_grayscale_then_full_release_with_qr_code(tmp_path: Path) -> None:
    with make_world(tmp_path, {GCASH: manifest()}) as world:
        statuses = world.run_until(phase_is("shop/gcash", Phase.PILOT_TESTING))
        (snapshot,) = world.simulator.releases()
        assert set(snapshot.testers) == {"2088000000000001", "2088000000000002"}
        assert statuses["shop/gcash"].testers == 2
        assert statuses["shop/gcash"].compatibility is not None
        assert statuses["shop/gcash"].review is not None

        world.edit(GCASH, manifest(complete=True, grayscale=20), "pilot done: 20%")
        statuses = world.run_until(phase_is("shop/gcash", Phase.GRAYSCALE, 20))
        assert world.simulator.releases()[0].grayscale == 20

        world.edit(GCASH, manifest(complete=True, grayscale=100), "full release")
        statuses = world.run_until(
            lambda s: (
                s["shop/gcash"].phase is Phase.RELEASED and s["shop/gcash"].qr_code is not None
            )
        )
        status = statuses["shop/gcash"]
        assert ready(status)
        assert status.qr_code is not None and "shop" in status.qr_code
        reasons = [event.reason for event in status.history]
        for expected in ("CreatingRelease", "Applying", "CompletingTesting", "ReleasingFully"):
            assert expected in reasons
        assert len(world.effects("set_grayscale")) == 1
        assert len(world.effects("full_release")) == 1
        assert_fast_forward_only(world.remote)


def test_a_pass_over_unchanged_inputs_commits_nothing_and_mutates_nothing(
    tmp_path: Path,
) -> None:
    with make_world(tmp_path, {DANA: manifest("shop", "dana", grayscale=50)}) as world:
        world.run_until(lambda s: ready(s["shop/dana"]))
        world.pass_once()  # settle the message of the last transition
        head, effects = remote_log(world.remote)[0].sha, world.effects()

        for _ in range(3):
            result = world.pass_once()
            assert result.pushed is None
            assert result.changed == ()

        assert remote_log(world.remote)[0].sha == head
        assert world.effects() == effects


def test_a_person_pushing_between_fetch_and_push_is_kept_and_nothing_is_forced(
    tmp_path: Path,
) -> None:
    with make_world(tmp_path, {GCASH: manifest(), DANA: manifest("shop", "dana")}) as world:
        pushed: list[str] = []

        def person_pushes_mid_pass(_result: object, _done: int, _total: int) -> None:
            if not pushed:  # after the controller fetched, before it pushes
                pushed.append(world.edit("README.md", "release notes\n", "docs: notes"))

        world.controller.progress = person_pushes_mid_pass
        result = world.pass_once()

        assert result.pushed is not None and result.pushed.attempts >= 2
        log = remote_log(world.remote)
        assert log[0].sha == result.pushed.commit
        assert pushed[0] in [c.sha for c in log]
        assert list(log[0].parents) == [pushed[0]]
        assert set(world.statuses()) == {"shop/gcash", "shop/dana"}
        assert_fast_forward_only(world.remote)


def test_an_invalid_manifest_is_marked_invalid_and_never_reaches_the_platform(
    tmp_path: Path,
) -> None:
    bad = manifest("shop", "dana").replace("grayscale: 0", "grayscale: 120")
    with make_world(tmp_path, {GCASH: manifest(), DANA: bad}) as world:
        world.pass_once()

        statuses = world.statuses()
        invalid = statuses["shop/dana"]
        assert invalid.phase is Phase.INVALID
        (error,) = invalid.errors
        assert (error.file, error.path, error.code) == (DANA, "spec.grayscale", "schema")
        assert error.line > 1 and error.column > 1
        stalled = invalid.condition(ConditionType.STALLED)
        assert stalled is not None and stalled.status is ConditionStatus.TRUE
        assert [r.target_app for r in world.simulator.releases()] == ["gcash"]
        assert statuses["shop/gcash"].phase is Phase.BUILDING  # the others go on

        world.edit(DANA, manifest("shop", "dana"), "fix grayscale")
        world.pass_once()
        assert world.statuses()["shop/dana"].phase is Phase.BUILDING
        assert world.statuses()["shop/dana"].errors == ()


def test_a_rejection_is_reapplied_only_after_the_spec_changes(tmp_path: Path) -> None:
    with make_world(tmp_path, {DANA: manifest("shop", "dana")}) as world:
        for _ in range(10):
            world.pass_once()
            under_review = [r for r in world.simulator.releases() if r.stage is Stage.UNDER_REVIEW]
            if under_review:
                break
            world.simulator.advance(60)
        (release,) = under_review
        world.simulator.review(release.release_id, approve=False, reason="description is vague")

        for _ in range(3):
            world.pass_once()
            world.simulator.advance(60)
        status = world.statuses()["shop/dana"]
        assert status.phase is Phase.REJECTED
        assert status.review is not None and status.review.reason == "description is vague"
        assert len(world.effects("apply")) == 1

        world.edit(DANA, manifest("shop", "dana", description="Pay with DANA."), "fix")
        world.run_until(phase_is("shop/dana", Phase.READY_TO_RELEASE))
        assert len(world.effects("apply")) == 2
        assert world.simulator.releases()[0].basic_info["description"] == "Pay with DANA."


def test_a_lower_grayscale_is_refused_with_a_clear_condition(tmp_path: Path) -> None:
    with make_world(tmp_path, {DANA: manifest("shop", "dana", grayscale=50)}) as world:
        world.run_until(phase_is("shop/dana", Phase.GRAYSCALE, 50))

        world.edit(DANA, manifest("shop", "dana", grayscale=10), "roll back to 10%")
        world.pass_once()

        status = world.statuses()["shop/dana"]
        stalled = status.condition(ConditionType.STALLED)
        assert stalled is not None and stalled.reason == "GrayscaleDecreaseRefused"
        assert "cancel" in stalled.message
        assert status.grayscale == 50
        assert world.simulator.releases()[0].grayscale == 50


def test_cancel_is_final_and_says_so(tmp_path: Path) -> None:
    with make_world(tmp_path, {GCASH: manifest()}) as world:
        world.run_until(phase_is("shop/gcash", Phase.PILOT_TESTING))
        world.edit(GCASH, manifest(cancel=True), "cancel: pilot found a bug")
        statuses = world.run_until(phase_is("shop/gcash", Phase.CANCELED))
        assert ready(statuses["shop/gcash"])
        assert world.simulator.releases()[0].stage is Stage.CANCELED
        assert len(world.effects("cancel")) == 1


def test_paused_release_is_observed_but_not_acted_on(tmp_path: Path) -> None:
    with make_world(tmp_path, {GCASH: manifest(paused=True)}) as world:
        world.pass_once()
        assert world.simulator.releases() == []
        assert world.statuses()["shop/gcash"].phase is Phase.PAUSED


def test_a_deleted_manifest_deletes_its_status_but_never_the_release(tmp_path: Path) -> None:
    with make_world(tmp_path, {GCASH: manifest(), DANA: manifest("shop", "dana")}) as world:
        world.pass_once()
        world.person.pull()
        world.person.git("rm", "--quiet", DANA)
        world.person.git("commit", "--quiet", "-m", "stop managing shop on dana")
        world.person.push()

        result = world.pass_once()

        assert result.removed == ("shop/dana",)
        assert set(world.statuses()) == {"shop/gcash"}
        assert {r.target_app for r in world.simulator.releases()} == {"gcash", "dana"}


def test_status_commits_touch_only_status_files(tmp_path: Path) -> None:
    with make_world(tmp_path, {GCASH: manifest(), DANA: manifest("shop", "dana")}) as world:
        world.run_until(phase_is("shop/dana", Phase.READY_TO_RELEASE))
        for commit in remote_log(world.remote):
            if commit.author.startswith("relctl"):
                files = world.person.git("show", "--name-only", "--format=", commit.sha).split()
                assert files and all(f.startswith("status/") for f in files)


def test_a_new_version_waits_for_its_upload_then_supersedes_nothing_released(
    tmp_path: Path,
) -> None:
    with make_world(tmp_path, {DANA: manifest("shop", "dana", grayscale=100)}) as world:
        world.run_until(lambda s: ready(s["shop/dana"]))
        world.edit(DANA, manifest("shop", "dana", version="1.5.0", grayscale=100), "1.5.0")

        world.pass_once()
        waiting = world.statuses()["shop/dana"]
        assert (waiting.version, waiting.phase) == ("1.5.0", Phase.PENDING)
        assert waiting.condition(ConditionType.READY) is not None

        world.simulator.upload("shop", "1.5.0")
        statuses = world.run_until(
            lambda s: s["shop/dana"].phase is Phase.RELEASED and ready(s["shop/dana"])
        )
        stages = {r.version: r.stage for r in world.simulator.releases()}
        assert stages == {"1.4.0": Stage.ARCHIVED, "1.5.0": Stage.FULL_RELEASE}
        assert statuses["shop/dana"].version == "1.5.0"


def world_effect_counts(world: World) -> dict[str, int]:
    counts: dict[str, int] = {}
    for operation, _request in world.effects():
        counts[operation] = counts.get(operation, 0) + 1
    return counts


class CountingPlatform:
    """The simulator, counting the observation calls the controller makes."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.finds = 0

    def find_releases(self, mini_program: str, target_app: str) -> object:
        self.finds += 1
        return self.inner.find_releases(mini_program, target_app)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_settled_releases_are_reobserved_only_after_the_resync_period_or_a_change(
    tmp_path: Path,
) -> None:
    with make_world(tmp_path, {DANA: manifest("shop", "dana", grayscale=50)}) as world:
        world.run_until(lambda s: ready(s["shop/dana"]))
        counting = CountingPlatform(world.simulator)
        world.controller.platform = counting  # type: ignore[assignment]
        world.controller.cache = PassCache()  # a fresh process
        world.pass_once()
        # the state says when the last process observed it: within the resync period
        assert counting.finds == 0

        world.pass_once()
        world.pass_once()
        assert counting.finds == 0  # settled: kept without asking the platform

        world.simulator.advance(world.controller.cache.resync.total_seconds() + 1)
        world.pass_once()
        assert counting.finds == 1  # resync period over: observed again

        world.edit(DANA, manifest("shop", "dana", grayscale=100), "full release")
        world.pass_once()
        assert counting.finds == 2  # the spec changed: observed at once
        assert world.simulator.releases()[0].stage is Stage.FULL_RELEASE


def test_a_status_commit_lists_at_most_message_lines_releases() -> None:
    results = [
        ReleaseResult(
            key=f"shop{n}/gcash",
            status=Status(f"shop{n}", "gcash", "1.4.0", "c0ffee", "hash", Phase.GRAYSCALE),
            transition="ReadyToRelease -> Grayscale",
            changed=True,
        )
        for n in range(MESSAGE_LINES + 50)
    ]
    message = commit_message(results, ["old/gcash"])
    subject, _blank, *lines = message.splitlines()
    count = MESSAGE_LINES + 50
    assert subject == f"status: {count} release(s) updated, {count} transition(s), 1 removed"
    assert len(lines) == MESSAGE_LINES
    assert lines[0] == "- shop0/gcash 1.4.0: ReadyToRelease -> Grayscale"
    assert lines[-1] == "- ... and 52 more (see the status files)"
