"""The adapter protocol: the only way the controller talks to a mini-program platform.

Operations mirror the console steps of the platform's release workflow (select app and build,
test compatibility, apply to release, pilot testing, grayscale, full release, QR code) and the
real release APIs that exist for them; ``docs/platform.md`` maps each one. Everything an
adapter returns is an immutable value; everything it raises is a
:class:`controller.platform.errors.PlatformError`.

Every mutating call takes an ``idempotency_key``: calling again with the same key replays the
first result (or the first error) and has no second effect. The controller derives keys from the
release, the spec it acts on and the action, so a retry after a crash or an ``Unknown`` result
can never apply twice.

An adapter may also implement :class:`ListsReleases` (optional): one call lists every release
that changed since an opaque cursor, so a periodic resync reads the platform in a few pages
instead of one call per release. Adapters without it are observed release by release.

Callers: ``controller.act`` (mutations), ``controller.reconcile`` (observation),
``relctl platform`` (the simulator's own CLI).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from controller.platform.rules import Stage

__all__ = [
    "LIST_RELEASES_MAX",
    "CompatibilityCase",
    "CompatibilityReport",
    "CompatibilityStatus",
    "Feedback",
    "ListsReleases",
    "Platform",
    "QrCode",
    "ReleaseChanges",
    "ReleaseSnapshot",
    "Review",
    "ReviewDecision",
    "Stage",  # defined in controller.platform.rules, re-exported for adapters and callers
    "TesterChange",
    "VersionInfo",
    "canonical_json",
    "configuration_digest",
]


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys; any Mapping is a JSON object, any list/tuple an array.

    Read-only mappings (``MappingProxyType``) and tuples are normalised first, so the same
    content always gives the same text, whatever container types carried it.
    """

    def plain(item: Any) -> Any:
        if isinstance(item, Mapping):
            return {str(k): plain(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [plain(v) for v in item]
        return item

    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), default=str)


def configuration_digest(configuration: Mapping[str, Any]) -> str:
    """A stable digest of a configuration: same content, same digest (key order ignored).

    The simulator stamps compatibility reports with it; the controller compares it with the
    digest of the manifest's configuration to know whether a report is still current.
    """
    return hashlib.sha256(canonical_json(configuration).encode()).hexdigest()[:16]


class CompatibilityStatus(StrEnum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"


class ReviewDecision(StrEnum):
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class VersionInfo:
    """An uploaded version of a mini program (``Upload mini programs`` in the seed)."""

    mini_program: str
    version: str
    uploaded_at: datetime


@dataclass(frozen=True)
class CompatibilityCase:
    """One cell of the compatibility matrix (operating system x network x device)."""

    os: str
    network: str
    device: str
    passed: bool


@dataclass(frozen=True)
class CompatibilityReport:
    """The result of one compatibility test run ("View Report" in the console)."""

    report_id: str
    status: CompatibilityStatus
    #: Share of passed cases, 0..100, rounded to one decimal; 0 while running.
    pass_rate: float
    cases: tuple[CompatibilityCase, ...]
    #: Digest of the configuration the test ran against (see ``configuration_digest``).
    configuration_digest: str
    started_at: datetime
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Review:
    """The platform's answer to an application for release."""

    decision: ReviewDecision
    reason: str
    #: Whether the platform requires pilot testing for this target (seen after approval).
    pilot_required: bool
    decided_at: datetime


@dataclass(frozen=True)
class QrCode:
    """A QR code for a released mini program: a deep link and its SVG rendering."""

    url: str
    svg: str


@dataclass(frozen=True)
class TesterChange:
    """What ``set_testers`` changed: the set difference, sorted."""

    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class Feedback:
    """Feedback metrics of a released version, used to judge a grayscale step."""

    crash_rate: float
    error_rate: float
    users_on_version: int


@dataclass(frozen=True)
class ReleaseSnapshot:
    """Everything observable about one release (one version on one target app)."""

    release_id: str
    mini_program: str
    version: str
    target_app: str
    environment: str
    stage: Stage
    basic_info: Mapping[str, str]
    configuration: Mapping[str, Any]
    #: The latest compatibility test, if any ran.
    compatibility: CompatibilityReport | None
    #: The latest review decision, if the release was ever reviewed.
    review: Review | None
    testers: tuple[str, ...]
    #: Share of app users who get this version, 0..100 (100 once fully released).
    grayscale: int
    #: When the release entered each stage it has been in (latest entry per stage).
    stage_times: Mapping[Stage, datetime]
    qr_code: QrCode | None
    created_at: datetime
    updated_at: datetime
    #: Free text the platform attaches to the current stage (build log line, cancel reason).
    message: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Platform(Protocol):
    """The narrow boundary between the controller and a mini-program platform."""

    # --- observation (no effects) ---------------------------------------------------------
    def get_version(self, mini_program: str, version: str) -> VersionInfo | None:
        """Return the uploaded version, or None if it has not been uploaded (yet)."""
        ...

    def get_release(self, release_id: str) -> ReleaseSnapshot:
        """Return the whole observed state of one release. Raises NotFound."""
        ...

    def find_releases(self, mini_program: str, target_app: str) -> list[ReleaseSnapshot]:
        """All releases of a mini program on a target app, oldest first."""
        ...

    def get_feedback(self, release_id: str) -> Feedback:
        """Feedback metrics (crash rate, error rate, users on the version)."""
        ...

    # --- mutations (each takes an idempotency key) ----------------------------------------
    def create_release(
        self,
        mini_program: str,
        version: str,
        target_app: str,
        environment: str,
        *,
        idempotency_key: str,
    ) -> ReleaseSnapshot:
        """Select the target app for a version: starts the build ("Select App", "Confirm")."""
        ...

    def update_basic_info(
        self, release_id: str, basic_info: Mapping[str, str], *, idempotency_key: str
    ) -> ReleaseSnapshot:
        """Replace the basic info (name, description, slogan); allowed until full release."""
        ...

    def update_configuration(
        self, release_id: str, configuration: Mapping[str, Any], *, idempotency_key: str
    ) -> ReleaseSnapshot:
        """Replace the package configuration; only before applying (or after a rejection)."""
        ...

    def run_compatibility_test(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        """Start a compatibility test of the current configuration ("Test Compatibility")."""
        ...

    def apply(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        """Apply to release: sends the release to review ("Apply to Release")."""
        ...

    def withdraw(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        """Withdraw an application under review; the release becomes editable again."""
        ...

    def set_testers(
        self, release_id: str, testers: Sequence[str], *, idempotency_key: str
    ) -> TesterChange:
        """Replace the pilot tester set ("Add Testers" / "Update Test Group")."""
        ...

    def complete_testing(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        """End pilot testing successfully ("Complete Testing")."""
        ...

    def cancel(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        """Cancel testing or the release; final for this version on this target."""
        ...

    def set_grayscale(
        self, release_id: str, percent: int, *, idempotency_key: str
    ) -> ReleaseSnapshot:
        """Release to ``percent`` of app users; the percentage only rises."""
        ...

    def full_release(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        """Release to all app users ("Full Release", or grayscale 100%)."""
        ...

    def create_qr_code(self, release_id: str, *, idempotency_key: str) -> QrCode:
        """Create the QR code of a released mini program."""
        ...


#: The largest page ``list_releases`` returns (a larger ``limit`` is served as this many).
LIST_RELEASES_MAX = 1000


@dataclass(frozen=True)
class ReleaseChanges:
    """One page of ``list_releases``."""

    #: Releases created or changed after ``since``, in change order (each at most once).
    releases: tuple[ReleaseSnapshot, ...]
    #: Opaque; pass it as ``since`` to get only what changed after this page.
    cursor: str
    #: True: more changes are already waiting; call again with ``cursor``.
    more: bool


@runtime_checkable
class ListsReleases(Protocol):
    """Adapters that can list what changed on the platform in one call (optional).

    The contract: a release whose snapshot (anything in :class:`ReleaseSnapshot`, including
    what changes by time passing: a build or a test that finishes, a review the clock decides)
    differs from what the caller saw up to cursor ``C`` appears in ``list_releases(since=C)``
    (or a later page of it). A release that did not change does not appear again.
    """

    def list_releases(self, since: str | None = None, *, limit: int = 1000) -> ReleaseChanges:
        """Releases created or changed after the cursor ``since`` (None: every release).

        At most ``limit`` releases per page (a ``limit`` above ``LIST_RELEASES_MAX`` is served
        as that many); ``more`` says another page waits.
        Raises NotFound for a cursor this platform did not hand out (another platform, a
        reset or restored database, a garbled token): list again from the start
        (``since=None``). ValueError for a ``limit`` below 1.
        """
        ...
