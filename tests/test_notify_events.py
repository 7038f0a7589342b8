"""Which notification events a change of status makes (``notify.derive_events``, pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.model import (
    Condition,
    ConditionStatus,
    ConditionType,
    Phase,
    Reason,
    ReviewSummary,
    Status,
)
from controller.notify import EventKind, NotificationEvent, Target, _Seen, derive_events

T = datetime(2026, 12, 3, tzinfo=UTC)


def status(
    phase: Phase,
    *,
    version: str = "1.4.0",
    grayscale: int = 0,
    ready: tuple[ConditionStatus, str] = (ConditionStatus.FALSE, "Waiting"),
    stalled: str | None = None,
    review: ReviewSummary | None = None,
) -> Status:
    conditions = [Condition(ConditionType.READY, ready[0], ready[1], f"ready: {ready[1]}", T)]
    if stalled is not None:
        conditions.append(
            Condition(
                ConditionType.STALLED, ConditionStatus.TRUE, stalled, f"stalled: {stalled}", T
            )
        )
    return Status(
        "shop", "gcash", version, "a" * 40, "h", phase, grayscale=grayscale,
        conditions=tuple(conditions), review=review,
    )  # fmt: skip


def kinds(before: Status | None, after: Status) -> list[str]:
    seen = _Seen.of(before) if before is not None else None
    return [str(e.kind) for e in derive_events(seen, after)]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (status(Phase.IN_REVIEW), status(Phase.PILOT_TESTING), ["Approved", "PilotStarted"]),
        (status(Phase.IN_REVIEW), status(Phase.READY_TO_RELEASE), ["Approved"]),
        (
            status(Phase.READY_TO_RELEASE),
            status(Phase.GRAYSCALE, grayscale=10),
            ["GrayscaleRaised"],
        ),
        (
            status(Phase.GRAYSCALE, grayscale=10),
            status(Phase.RELEASED, grayscale=100),
            ["Released", "GrayscaleRaised"],
        ),
        (status(Phase.GRAYSCALE, grayscale=10), status(Phase.CANCELED), ["Canceled"]),
        (status(Phase.TESTING), status(Phase.PAUSED), ["Halted"]),
        (status(Phase.TESTING), status(Phase.FORBIDDEN), ["Forbidden"]),
        (
            status(Phase.TESTING),
            status(Phase.TESTING, stalled=Reason.COMPATIBILITY_FAILED),
            ["Stalled"],
        ),
        (
            status(Phase.IN_REVIEW),
            status(Phase.PILOT_TESTING, ready=(ConditionStatus.FALSE, Reason.PILOT_TESTING)),
            ["Approved", "PilotStarted", "WaitingForPerson"],
        ),
        # nothing changed: nothing to say
        (status(Phase.GRAYSCALE, grayscale=10), status(Phase.GRAYSCALE, grayscale=10), []),
        # a controller that never saw the release announces nothing of its present state
        (None, status(Phase.RELEASED, grayscale=100), []),
    ],
)
def test_events_of_a_change(before: Status | None, after: Status, expected: list[str]) -> None:
    assert kinds(before, after) == expected


def test_a_replica_that_just_took_the_lease_announces_what_its_first_pass_did() -> None:
    after = status(Phase.PILOT_TESTING)
    assert [e.kind for e in derive_events(None, after, "InReview -> PilotTesting")] == [
        EventKind.APPROVED,
        EventKind.PILOT_STARTED,
    ]
    assert derive_events(None, after, "New -> PilotTesting") == []


def test_a_rejection_carries_the_reviewers_reason() -> None:
    after = status(Phase.REJECTED, stalled=Reason.REJECTED,
                   review=ReviewSummary("REJECTED", "Screenshots show another app"))  # fmt: skip
    events = derive_events(_Seen.of(status(Phase.IN_REVIEW)), after)
    assert [e.kind for e in events] == [EventKind.REJECTED]  # not also Stalled
    assert "Screenshots show another app" in events[0].message


def test_a_new_version_starts_from_scratch() -> None:
    before = status(Phase.RELEASED, grayscale=100)
    after = status(Phase.GRAYSCALE, version="1.5.0", grayscale=10)
    assert kinds(before, after) == ["GrayscaleRaised"]


def test_event_ids_are_deterministic_and_targets_filter_by_scope() -> None:
    one = NotificationEvent(EventKind.RELEASED, "shop/gcash", "1.4.0", "Released", "m", "a")
    again = NotificationEvent(EventKind.RELEASED, "shop/gcash", "1.4.0", "Released", "x", "b")
    assert one.id == again.id
    assert Target("t", "json://h", mini_programs=frozenset({"shop"})).wants(one)
    assert not Target("t", "json://h", target_apps=frozenset({"dana"})).wants(one)
    assert not Target("t", "json://h", events=frozenset({"Rejected"})).wants(one)
