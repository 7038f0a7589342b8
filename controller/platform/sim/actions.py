"""What someone can do to one release: the actions the simulator's engine applies.

One small frozen value per mutation of the ``Platform`` protocol, named after the console step
it mirrors, plus the reviewer's decision. ``Action`` is their union; it carries only what the
action itself says (the new basic info, the tester set, a percentage), never the release.

Built by :class:`controller.platform.sim.Simulator` (from adapter calls and ``review``) and by
``controller.preview`` (from the controller's planned steps); consumed by
:func:`controller.platform.sim.engine.effect`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Action",
    "Apply",
    "Cancel",
    "CompleteTesting",
    "CreateQrCode",
    "FullRelease",
    "ReviewApplication",
    "RunCompatibilityTest",
    "SetGrayscale",
    "SetTesters",
    "UpdateBasicInfo",
    "UpdateConfiguration",
    "Withdraw",
]


@dataclass(frozen=True)
class UpdateBasicInfo:
    """View Configuration, basic info: name, description, slogan (until full release)."""

    basic_info: Mapping[str, str]


@dataclass(frozen=True)
class UpdateConfiguration:
    """View Configuration: the package configuration (before applying, or after rejection)."""

    configuration: Mapping[str, Any]


@dataclass(frozen=True)
class RunCompatibilityTest:
    """Test Compatibility; ``report_id`` names the report it starts (the platform's id)."""

    report_id: str


@dataclass(frozen=True)
class Apply:
    """Apply to Release: sends the release to review."""


@dataclass(frozen=True)
class Withdraw:
    """Withdraw an application under review; the release becomes editable again."""


@dataclass(frozen=True)
class SetTesters:
    """Add Testers / Update Test Group: the whole tester set, super app user ids."""

    testers: tuple[str, ...]


@dataclass(frozen=True)
class CompleteTesting:
    """Complete Testing: pilot testing ends, the release is prepared."""


@dataclass(frozen=True)
class Cancel:
    """Cancel Testing / cancel the release: final for this version on this target."""


@dataclass(frozen=True)
class SetGrayscale:
    """Grayscale Release to ``percent`` of app users (only rises; 100 is the full release)."""

    percent: int


@dataclass(frozen=True)
class FullRelease:
    """Full Release to every app user."""


@dataclass(frozen=True)
class CreateQrCode:
    """Generate the QR code of a released version."""


@dataclass(frozen=True)
class ReviewApplication:
    """The platform's review of an application (Alipay+ and the partner app decide)."""

    approve: bool
    reason: str = ""


#: Everything that can happen to a release by someone's action (time-driven progress, a
#: build or a test finishing, is the simulator's own: ``controller.platform.sim.records``).
Action = (
    UpdateBasicInfo
    | UpdateConfiguration
    | RunCompatibilityTest
    | Apply
    | Withdraw
    | SetTesters
    | CompleteTesting
    | Cancel
    | SetGrayscale
    | FullRelease
    | CreateQrCode
    | ReviewApplication
)
