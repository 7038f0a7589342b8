"""The platform's release rules as one table: stages, what each stage allows, versions.

One job: say, as data, what the mini-program platform allows (``seed/release-mini-programs.txt``
and DESIGN 4.1): the ``Stage`` of a release, the named sets of stages every rule is written
against, the allowed stage transitions, and how versions are parsed and ordered. Nothing here
acts or decides; every other module asks this one instead of keeping its own list.

Callers: ``controller.platform.protocol`` (re-exports ``Stage``), the simulator's engine
(``controller.platform.sim``, which enforces the rules), ``controller.plan`` (decides against
them), ``controller.check`` (refuses pull requests the platform would refuse) and, through the
simulator's engine, ``controller.preview``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "BASIC_INFO_EDITABLE_STAGES",
    "CANCELABLE_STAGES",
    "CONFIGURATION_EDITABLE_STAGES",
    "CONFIGURATION_FROZEN_STAGES",
    "FINAL_STAGES",
    "IN_FLIGHT_STAGES",
    "RELEASABLE_STAGES",
    "RELEASED_STAGES",
    "SUPERSEDE_REQUIRED_STAGES",
    "TRANSITIONS",
    "Stage",
    "Version",
]


class Stage(StrEnum):
    """Release progress of one version on one target app, as the platform reports it."""

    BUILDING = "BUILDING"
    BUILD_FAILED = "BUILD_FAILED"
    NEW_VERSION_CREATED = "NEW_VERSION_CREATED"
    UNDER_REVIEW = "UNDER_REVIEW"
    REJECTED = "REJECTED"
    PILOT_TESTING = "PILOT_TESTING"
    RELEASE_PREPARATION = "RELEASE_PREPARATION"
    GRAYSCALE = "GRAYSCALE"
    FULL_RELEASE = "FULL_RELEASE"
    CANCELED = "CANCELED"
    ARCHIVED = "ARCHIVED"


# --------------------------------------------------------------------------------------------
# named sets of stages
# --------------------------------------------------------------------------------------------

FINAL_STAGES: frozenset[Stage] = frozenset({Stage.BUILD_FAILED, Stage.CANCELED, Stage.ARCHIVED})
"""Nothing more happens to the release: its build failed, it was canceled ("to release the
mini program again, you must create and upload a new version"), or a newer full release
replaced it. Every change to such a release is refused."""

IN_FLIGHT_STAGES: frozenset[Stage] = frozenset(Stage) - FINAL_STAGES - {Stage.FULL_RELEASE}
"""The release process is still running, from the build to a grayscale release. A target app
takes one release of a mini program in flight at a time: a new one waits for it (or cancels
it)."""

CANCELABLE_STAGES: frozenset[Stage] = IN_FLIGHT_STAGES
"""Cancel Testing / cancel the grayscale release: possible in every stage of the release
process; a full release cannot be canceled (fully release a newer version instead)."""

BASIC_INFO_EDITABLE_STAGES: frozenset[Stage] = IN_FLIGHT_STAGES
""""Only basic information can be modified during the release process": basic info stays
editable in every stage of the release process, until the full release."""

CONFIGURATION_EDITABLE_STAGES: frozenset[Stage] = frozenset(
    {Stage.NEW_VERSION_CREATED, Stage.REJECTED}
)
"""View Configuration: "check and modify the configurations" once the package is built and
while testing compatibility, and again after a rejection ("you can edit the basic information
and the configuration"). The same stages are where Test Compatibility and Apply to Release
are possible."""

RELEASABLE_STAGES: frozenset[Stage] = frozenset({Stage.RELEASE_PREPARATION, Stage.GRAYSCALE})
"""Grayscale Release and Full Release start from Release Preparation (after approval, or
after Complete Testing) and continue from a grayscale release."""

RELEASED_STAGES: frozenset[Stage] = frozenset({Stage.GRAYSCALE, Stage.FULL_RELEASE})
"""App users have the version: a share of them in a grayscale release, all of them after the
full release. QR codes exist for these stages, and the observed grayscale is a floor."""

SUPERSEDE_REQUIRED_STAGES: frozenset[Stage] = frozenset(
    {Stage.UNDER_REVIEW, Stage.PILOT_TESTING, Stage.RELEASE_PREPARATION, Stage.GRAYSCALE}
)
"""In-flight stages in which the version was applied for, or testers or app users already
have it: replacing it with a newer version (which cancels it) needs ``supersede: true``
(DESIGN 4.2)."""

CONFIGURATION_FROZEN_STAGES: frozenset[Stage] = frozenset(
    {
        Stage.PILOT_TESTING,
        Stage.RELEASE_PREPARATION,
        Stage.GRAYSCALE,
        Stage.FULL_RELEASE,
        Stage.CANCELED,
        Stage.ARCHIVED,
    }
)
"""The configuration of the version can never change again: it passed review ("only basic
information can be modified"), or the version is canceled or archived. ``relctl check``
refuses a configuration change of a version in one of these stages."""


# --------------------------------------------------------------------------------------------
# transitions
# --------------------------------------------------------------------------------------------

TRANSITIONS: Mapping[Stage, frozenset[Stage]] = MappingProxyType(
    {
        Stage.BUILDING: frozenset({Stage.BUILD_FAILED, Stage.NEW_VERSION_CREATED, Stage.CANCELED}),
        Stage.NEW_VERSION_CREATED: frozenset({Stage.UNDER_REVIEW, Stage.CANCELED}),
        Stage.UNDER_REVIEW: frozenset(
            {
                Stage.REJECTED,
                Stage.PILOT_TESTING,
                Stage.RELEASE_PREPARATION,
                Stage.NEW_VERSION_CREATED,
                Stage.CANCELED,
            }
        ),
        Stage.REJECTED: frozenset({Stage.UNDER_REVIEW, Stage.CANCELED}),
        Stage.PILOT_TESTING: frozenset({Stage.RELEASE_PREPARATION, Stage.CANCELED}),
        Stage.RELEASE_PREPARATION: frozenset({Stage.GRAYSCALE, Stage.FULL_RELEASE, Stage.CANCELED}),
        Stage.GRAYSCALE: frozenset({Stage.GRAYSCALE, Stage.FULL_RELEASE, Stage.CANCELED}),
        Stage.FULL_RELEASE: frozenset({Stage.ARCHIVED}),
        Stage.BUILD_FAILED: frozenset(),
        Stage.CANCELED: frozenset(),
        Stage.ARCHIVED: frozenset(),
    }
)
"""Every stage change the platform makes: DESIGN 4.1, plus three the real platforms also
allow: cancel before pilot testing (BUILDING .. REJECTED -> CANCELED), withdraw an application
(UNDER_REVIEW -> NEW_VERSION_CREATED) and apply again after a rejection (REJECTED ->
UNDER_REVIEW). GRAYSCALE -> GRAYSCALE is a higher percentage."""


# --------------------------------------------------------------------------------------------
# versions
# --------------------------------------------------------------------------------------------

_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)", re.ASCII)


@dataclass(frozen=True, order=True, slots=True)
class Version:
    """An uploaded version, ``x.y.z``: three numbers, compared numerically (1.10.0 > 1.9.0).

    Versions of a mini program only increase: the platform refuses an upload that is not newer
    than the newest uploaded one, and a release of a version older than one already released
    to the same target app.
    """

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        """``"1.10.0"`` -> ``Version(1, 10, 0)``; ValueError unless ``text`` is exactly x.y.z.

        ASCII digits only, no leading zeros, no sign, no surrounding space or newline.
        """
        match = _VERSION.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"invalid version {text!r}: use x.y.z, e.g. 1.4.0")
        return cls(int(match[1]), int(match[2]), int(match[3]))

    @classmethod
    def parse_or_none(cls, text: str) -> Version | None:
        """Like :meth:`parse`, but None for a text that is not a version.

        For versions read from outside (a platform's answer, a status file): one that cannot
        be parsed cannot be ordered, and the caller skips it instead of failing.
        """
        try:
            return cls.parse(text)
        except ValueError:
            return None

    def next_patch(self) -> Version:
        """The smallest greater version with the same major and minor: 1.4.0 -> 1.4.1."""
        return Version(self.major, self.minor, self.patch + 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"
