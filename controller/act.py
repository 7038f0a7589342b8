"""Execute one Plan's step through the platform adapter; platform errors become outcomes.

``act`` is the only place the controller mutates the platform. It never raises a
:class:`PlatformError`: every failure comes back as an :class:`ActResult` that ``reconcile``
records on that one release (last error, attempts, next retry), so one release's failure never
stops the others and the pass never dies on a platform error.

Retry policy by error type (STYLE.md 3):

* ``Transient`` / ``RateLimited``: nothing happened; retry the same step after a jittered
  exponential backoff (or the platform's ``retry_after``).
* ``Unknown``: the call may have happened. Retry soon: the next pass re-observes the platform
  (the truth of what happened) before deciding again, and the step's idempotency key makes a
  repeated call replay the first result instead of acting twice.
* permanent errors (``InvalidState``, ``Conflict``, ``LimitExceeded``, ...): the platform
  refused; the release is marked stalled with the platform's words and re-checked with a long
  backoff, or at once when the manifest changes.

Called by ``controller.reconcile``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.model import Action, ErrorRecord, Release, Step
from controller.platform.errors import PlatformError, RateLimited, Unknown
from controller.platform.protocol import Platform, ReleaseSnapshot, TesterChange

#: First retry delay after a retryable error, doubled per attempt up to ``BACKOFF_CAP``.
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(minutes=10)
#: Re-check delay after a permanent refusal (the platform or a person may still move).
REFUSAL_RECHECK = timedelta(minutes=10)


@dataclass(frozen=True)
class ActResult:
    """What happened when a step was executed."""

    step: Step
    #: The release after the step, when the adapter returned it.
    snapshot: ReleaseSnapshot | None = None
    tester_change: TesterChange | None = None
    error: PlatformError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def permanent(self) -> bool:
        """The platform refused the step; retrying the same call will not help by itself."""
        return self.error is not None and not self.error.retryable


def act(platform: Platform, release: Release, step: Step) -> ActResult:
    """Execute ``step`` (one platform mutation) for ``release``. Never raises a PlatformError."""
    try:
        return _execute(platform, release, step)
    except PlatformError as error:
        return ActResult(step=step, error=error)


def _execute(platform: Platform, release: Release, step: Step) -> ActResult:
    key = step.idempotency_key
    if step.action is Action.CREATE_RELEASE:
        snapshot = platform.create_release(
            release.mini_program,
            release.spec.version,
            release.target_app,
            release.environment,
            idempotency_key=key,
        )
        return ActResult(step=step, snapshot=snapshot)

    release_id = step.release_id
    if release_id is None:  # a plan bug, not a platform error: fail loudly in tests
        raise ValueError(f"{step.action} needs a release id")
    calls: dict[Action, Callable[[], ReleaseSnapshot]] = {
        Action.UPDATE_CONFIGURATION: lambda: platform.update_configuration(
            release_id, dict(step.configuration or {}), idempotency_key=key
        ),
        Action.UPDATE_BASIC_INFO: lambda: platform.update_basic_info(
            release_id, dict(step.basic_info or {}), idempotency_key=key
        ),
        Action.RUN_COMPATIBILITY_TEST: lambda: platform.run_compatibility_test(
            release_id, idempotency_key=key
        ),
        Action.APPLY: lambda: platform.apply(release_id, idempotency_key=key),
        Action.WITHDRAW: lambda: platform.withdraw(release_id, idempotency_key=key),
        Action.COMPLETE_TESTING: lambda: platform.complete_testing(release_id, idempotency_key=key),
        Action.CANCEL: lambda: platform.cancel(release_id, idempotency_key=key),
        Action.SET_GRAYSCALE: lambda: platform.set_grayscale(
            release_id, int(step.percent or 0), idempotency_key=key
        ),
        Action.FULL_RELEASE: lambda: platform.full_release(release_id, idempotency_key=key),
    }
    if step.action is Action.SET_TESTERS:
        change = platform.set_testers(release_id, list(step.testers or ()), idempotency_key=key)
        return ActResult(step=step, tester_change=change)
    if step.action is Action.CREATE_QR_CODE:
        platform.create_qr_code(release_id, idempotency_key=key)
        return ActResult(step=step)
    return ActResult(step=step, snapshot=calls[step.action]())


def record_error(
    result: ActResult, previous: ErrorRecord | None, now: datetime
) -> tuple[ErrorRecord, datetime]:
    """The error record and next retry time for a failed step (attempts count per step)."""
    assert result.error is not None
    error = result.error
    same_step = previous is not None and previous.action == result.step.idempotency_key
    attempts = previous.attempts + 1 if same_step and previous is not None else 1
    record = ErrorRecord(
        code=error.code,
        message=error.message,
        action=result.step.idempotency_key,
        attempts=attempts,
        time=now,
    )
    return record, now + retry_delay(error, attempts, result.step.idempotency_key)


#: The ``action`` of an error record left by a failed observation (not a step).
OBSERVE = "observe"


def record_observation_error(
    error: PlatformError, previous: ErrorRecord | None, key: str, now: datetime
) -> tuple[ErrorRecord, datetime]:
    """The error record and next observation time after the platform could not be read.

    Per release, exponential with jitter like a failed step, at least ``BACKOFF_BASE`` (an
    Unknown read is not worth an immediate retry), and the platform's ``retry_after`` when it
    asks for quiet: a platform that is down is not asked about every release every pass.
    """
    same = previous is not None and previous.action == OBSERVE
    attempts = previous.attempts + 1 if same and previous is not None else 1
    record = ErrorRecord(
        code=error.code, message=error.message, action=OBSERVE, attempts=attempts, time=now
    )
    delay = retry_delay(error, attempts, f"{key}/{OBSERVE}")
    if not isinstance(error, RateLimited):
        delay = max(delay, min(BACKOFF_CAP, BACKOFF_BASE * (2 ** min(attempts - 1, 16))))
    return record, now + delay


def retry_delay(error: PlatformError, attempts: int, salt: str) -> timedelta:
    """How long to wait before the same step is tried again.

    Exponential with a deterministic jitter (derived from the step and attempt, so the same
    failure renders the same status bytes) of up to +25%.
    """
    if isinstance(error, Unknown):
        return timedelta(0)  # re-observe on the next pass; the idempotency key keeps it safe
    if isinstance(error, RateLimited):
        return timedelta(seconds=max(error.retry_after, 0.0))
    if not error.retryable:
        return REFUSAL_RECHECK
    base: timedelta = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** min(attempts - 1, 16)))
    jitter = int(hashlib.sha256(f"{salt}:{attempts}".encode()).hexdigest()[:4], 16) / 0xFFFF
    delay: timedelta = min(BACKOFF_CAP, base * (1 + jitter / 4))
    return delay
