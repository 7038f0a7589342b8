"""Typed errors of the platform boundary; the error type *is* the caller's retry policy.

Every adapter (the embedded simulator, a future HTTP client) raises only these. The
controller's ``act`` step turns them into outcomes recorded on one release::

    PlatformError
     ├── InvalidState     the release is not in a stage that allows the call (permanent)
     ├── NotFound         no such version / release (permanent until something changes)
     ├── Conflict         e.g. the version was already used on that target (permanent)
     ├── LimitExceeded    e.g. more testers than the target app allows (permanent)
     ├── NotEditable      configuration after applying, anything after cancel (permanent)
     ├── RateLimited      slow down; ``retry_after`` seconds (retry later)
     ├── Transient        the call did not happen; safe to retry (retry later)
     ├── Unknown          the call may or may not have happened: re-query before retrying
     │                    (the platform's "U" result status)
     └── PlatformUnusable the adapter was pointed at something it cannot use (no simulator
                          database at the path, a file that is not one, a corrupt or
                          read-only one): needs a person, never retried
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar


class PlatformError(Exception):
    """Base class of every error an adapter raises."""

    #: True when repeating the same call later may succeed without a person's help.
    retryable: bool = False
    #: Stable machine-readable code, used in status files and JSON output.
    code: str = "PlatformError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidState(PlatformError):
    """The release's current stage does not allow this operation."""

    code = "InvalidState"


class NotFound(PlatformError):
    """The version, release or target app does not exist on the platform."""

    code = "NotFound"


class Conflict(PlatformError):
    """The operation conflicts with an existing object (version already used on a target)."""

    code = "Conflict"


class LimitExceeded(PlatformError):
    """A platform limit was hit (tester limit, allowed grayscale values)."""

    code = "LimitExceeded"


class NotEditable(PlatformError):
    """The field can no longer be changed in this stage (configuration after applying)."""

    code = "NotEditable"


class RateLimited(PlatformError):
    """Too many calls; try again after ``retry_after`` seconds."""

    code = "RateLimited"
    retryable = True

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Transient(PlatformError):
    """A temporary failure; the call had no effect and may be retried."""

    code = "Transient"
    retryable = True


class Unknown(PlatformError):
    """The outcome is unknown: the call may have happened. Re-query before retrying."""

    code = "Unknown"
    retryable = True


class PlatformUnusable(PlatformError):
    """The adapter cannot use what it was pointed at; a person has to fix the path or file.

    Raised when an adapter is opened (``open_platform``) and when its storage breaks under it
    (a simulator database that became corrupt or read-only). The message names the path and
    what to do, in one line.
    """

    code = "PlatformUnusable"


ERROR_TYPES: dict[str, type[PlatformError]] = {
    cls.code: cls
    for cls in (
        PlatformError,
        InvalidState,
        NotFound,
        Conflict,
        LimitExceeded,
        NotEditable,
        RateLimited,
        Transient,
        Unknown,
        PlatformUnusable,
    )
}


T = TypeVar("T")


def retry_briefly(
    call: Callable[[], T],
    *,
    retry_on: tuple[type[PlatformError], ...],
    retries: int,
    backoff: float,
    max_retry_after: float,
    sleep: Callable[[float], None],
) -> T:
    """``call()``, repeated at most ``retries`` times inside one adapter call on an error of
    ``retry_on``: a :class:`RateLimited` after its ``retry_after`` when that is at most
    ``max_retry_after`` seconds (a longer wait surfaces at once: the controller's backoff
    takes over), any other after ``backoff * 2**attempt``. The adapters that speak HTTP
    (``http.client``, ``wechat.wire``) share it; what each may repeat is theirs to say."""
    attempt = 0
    while True:
        try:
            return call()
        except retry_on as error:
            if attempt >= retries:
                raise
            if isinstance(error, RateLimited):
                if error.retry_after > max_retry_after:
                    raise
                delay = error.retry_after
            else:
                delay = backoff * (2**attempt)
            attempt += 1
            sleep(delay)
