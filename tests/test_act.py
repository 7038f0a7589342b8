"""The retry policy of act: errors become outcomes, delays follow the error type."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from controller.act import BACKOFF_CAP, REFUSAL_RECHECK, ActResult, act, record_error, retry_delay
from controller.model import Action, Release, ReleaseSpec, Step
from controller.platform.errors import InvalidState, NotFound, RateLimited, Transient, Unknown
from controller.platform.sim import Simulator

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
RELEASE = Release("shop", "gcash", "production", "releases/shop/gcash.yaml", ReleaseSpec("1.4.0"))


def step(key: str = "shop/gcash/1.4.0/apply/x") -> Step:
    return Step(Action.APPLY, "R-000001", key)


def test_transient_errors_back_off_exponentially_up_to_a_cap() -> None:
    delays = [retry_delay(Transient("busy"), n, "k") for n in range(1, 12)]
    assert delays[0] >= timedelta(seconds=5)
    assert all(a < b or b == BACKOFF_CAP for a, b in itertools.pairwise(delays))
    assert delays[-1] == BACKOFF_CAP


def test_jitter_is_deterministic_so_the_same_failure_renders_the_same_status() -> None:
    assert retry_delay(Transient("x"), 3, "key") == retry_delay(Transient("x"), 3, "key")
    assert retry_delay(Transient("x"), 3, "key") != retry_delay(Transient("x"), 3, "other")


def test_unknown_is_retried_at_once_because_the_next_pass_reobserves_first() -> None:
    assert retry_delay(Unknown("maybe"), 1, "k") == timedelta(0)


def test_rate_limits_wait_what_the_platform_asks() -> None:
    assert retry_delay(RateLimited("slow down", retry_after=42), 1, "k") == timedelta(seconds=42)


def test_permanent_refusals_are_rechecked_rarely() -> None:
    assert retry_delay(InvalidState("no"), 1, "k") == REFUSAL_RECHECK


def test_attempts_count_per_step_and_restart_for_a_new_step() -> None:
    failed = ActResult(step=step(), error=Transient("busy"))
    first, _ = record_error(failed, None, NOW)
    second, retry_at = record_error(failed, first, NOW)
    other, _ = record_error(ActResult(step=step("other"), error=Transient("busy")), second, NOW)
    assert (first.attempts, second.attempts, other.attempts) == (1, 2, 1)
    assert second.code == "Transient" and retry_at > NOW


def test_act_turns_platform_errors_into_outcomes(tmp_path: Path) -> None:
    with Simulator(tmp_path / "p.db") as simulator:
        result = act(simulator, RELEASE, step())  # no such release on the platform
        assert isinstance(result.error, NotFound)
        assert result.permanent and not result.ok


def test_act_creates_a_release_for_the_manifest(tmp_path: Path) -> None:
    with Simulator(tmp_path / "p.db") as simulator:
        simulator.set_app("gcash")
        simulator.upload("shop", "1.4.0")
        result = act(simulator, RELEASE, Step(Action.CREATE_RELEASE, None, "create-1"))
        assert result.ok and result.snapshot is not None
        assert (result.snapshot.version, result.snapshot.target_app) == ("1.4.0", "gcash")
        again = act(simulator, RELEASE, Step(Action.CREATE_RELEASE, None, "create-1"))
        assert again.snapshot is not None
        assert again.snapshot.release_id == result.snapshot.release_id
        assert len(simulator.releases()) == 1
