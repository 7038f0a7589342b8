"""Idempotency keys and fault injection: a retried call never acts twice.

Real simulator on a temporary SQLite file, manual clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.platform.errors import (
    Conflict,
    InvalidState,
    PlatformError,
    RateLimited,
    Transient,
    Unknown,
)
from controller.platform.protocol import Stage
from controller.platform.sim import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    with Simulator(tmp_path / "platform.db") as simulator:
        simulator.set_clock(manual=True, at=T0)
        simulator.set_app("gcash", build_seconds=0, test_seconds=0, review_after=0)
        simulator.upload("shop", "1.0.0")
        simulator.upload("shop", "1.1.0")
        yield simulator


def test_same_key_replays_the_first_result_without_a_second_effect(sim: Simulator) -> None:
    first = sim.create_release("shop", "1.0.0", "gcash", "production", idempotency_key="c1")
    again = sim.create_release("shop", "1.0.0", "gcash", "production", idempotency_key="c1")
    assert again == first
    assert len(sim.releases()) == 1


def test_replay_returns_the_first_answer_even_after_the_release_moved(sim: Simulator) -> None:
    sim.set_app("gcash", review_after=30)
    release = sim.create_release("shop", "1.0.0", "gcash", "production", idempotency_key="c1")
    sim.run_compatibility_test(release.release_id, idempotency_key="t1")
    applied = sim.apply(release.release_id, idempotency_key="a1")
    assert applied.stage is Stage.UNDER_REVIEW
    sim.advance(30)
    assert sim.get_release(release.release_id).stage is Stage.RELEASE_PREPARATION
    assert sim.apply(release.release_id, idempotency_key="a1") == applied


def test_same_key_with_different_arguments_is_a_conflict(sim: Simulator) -> None:
    sim.create_release("shop", "1.0.0", "gcash", "production", idempotency_key="c1")
    with pytest.raises(Conflict, match="already used for a different call"):
        sim.create_release("shop", "1.1.0", "gcash", "production", idempotency_key="c1")
    release_id = sim.releases()[0].release_id
    with pytest.raises(Conflict, match=r"\(create_release\)"):
        sim.cancel(release_id, idempotency_key="c1")
    assert len(sim.releases()) == 1


def test_a_permanent_error_is_replayed_for_the_same_key(sim: Simulator) -> None:
    release = sim.create_release("shop", "1.0.0", "gcash", "production", idempotency_key="c1")
    with pytest.raises(InvalidState, match="run a compatibility test first"):
        sim.apply(release.release_id, idempotency_key="a1")
    sim.run_compatibility_test(release.release_id, idempotency_key="t1")
    with pytest.raises(InvalidState, match="run a compatibility test first"):
        sim.apply(release.release_id, idempotency_key="a1")  # the first answer, replayed
    assert sim.apply(release.release_id, idempotency_key="a2").stage is Stage.RELEASE_PREPARATION


def test_unknown_result_means_it_happened_and_a_retry_replays_it(sim: Simulator) -> None:
    sim.faults(unknown_rate=1.0, seed=1)
    with pytest.raises(Unknown, match="query the release"):
        sim.create_release("shop", "1.0.0", "gcash", "production", idempotency_key="c1")
    # the call did happen: the platform shows the release
    found = sim.releases()
    assert [r.version for r in found] == ["1.0.0"]
    sim.faults(off=True)
    replay = sim.create_release("shop", "1.0.0", "gcash", "production", idempotency_key="c1")
    assert replay.release_id == found[0].release_id
    assert len(sim.releases()) == 1


def test_retrying_through_unknown_faults_acts_once(sim: Simulator) -> None:
    sim.faults(unknown_rate=0.7, error_rate=0.2, seed=7)
    snapshot = None
    for _ in range(100):
        try:
            snapshot = sim.create_release(
                "shop", "1.0.0", "gcash", "production", idempotency_key="c1"
            )
            break
        except (Unknown, Transient):
            continue
    assert snapshot is not None
    sim.faults(off=True)
    assert len(sim.releases()) == 1


def test_transient_errors_have_no_effect_and_are_not_remembered(sim: Simulator) -> None:
    sim.faults(error_rate=1.0)
    with pytest.raises(Transient):
        sim.create_release("shop", "1.0.0", "gcash", "production", idempotency_key="c1")
    assert sim.releases() == []
    sim.faults(off=True)
    created = sim.create_release("shop", "1.0.0", "gcash", "production", idempotency_key="c1")
    assert created.version == "1.0.0"


def test_rate_limited_carries_retry_after_and_has_no_effect(sim: Simulator) -> None:
    sim.faults(rate_limited_rate=1.0, retry_after=7)
    with pytest.raises(RateLimited) as raised:
        sim.create_release("shop", "1.0.0", "gcash", "production", idempotency_key="c1")
    assert raised.value.retry_after == 7
    assert raised.value.retryable
    with pytest.raises(RateLimited):
        sim.find_releases("shop", "gcash")  # reads are rate limited too
    sim.faults(off=True)
    assert sim.releases() == []


def test_reads_never_answer_unknown(sim: Simulator) -> None:
    sim.faults(unknown_rate=1.0)
    assert sim.find_releases("shop", "gcash") == []
    assert sim.get_version("shop", "1.0.0") is not None


def _fault_sequence(sim: Simulator, seed: int) -> list[str]:
    sim.faults(error_rate=0.3, unknown_rate=0.3, rate_limited_rate=0.1, seed=seed)
    outcomes = []
    for i in range(30):
        try:
            sim.get_version("shop", "1.0.0")
            sim.update_basic_info("R-000001", {"n": str(i)}, idempotency_key=f"b{seed}-{i}")
            outcomes.append("ok")
        except PlatformError as error:
            outcomes.append(error.code)
    return outcomes


def test_fault_decisions_are_reproducible_from_the_seed(tmp_path: Path) -> None:
    runs = []
    for attempt in range(2):
        with Simulator(tmp_path / f"p{attempt}.db") as sim:
            sim.set_clock(manual=True, at=T0)
            sim.set_app("gcash")
            sim.upload("shop", "1.0.0")
            sim.create_release("shop", "1.0.0", "gcash", "production", idempotency_key="c")
            runs.append(_fault_sequence(sim, seed=42))
    assert runs[0] == runs[1]
    assert {"ok", "Transient", "Unknown"} <= set(runs[0])


def test_fault_settings_are_validated(sim: Simulator) -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        sim.faults(error_rate=1.5)


def test_latency_delays_adapter_calls(sim: Simulator) -> None:
    import time

    sim.faults(latency=0.05)
    started = time.monotonic()
    sim.find_releases("shop", "gcash")
    assert time.monotonic() - started >= 0.05
