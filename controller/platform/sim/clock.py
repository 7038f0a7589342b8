"""The simulator's clock: real time (optionally shifted) or a manual clock moved by hand.

Builds, compatibility tests and reviews take time on the *simulator's* clock, not the host's.
The clock setting lives in the simulator's database, so the controller process and a person
running ``relctl platform clock --advance 30s`` in another terminal see the same time:

* ``real``: host time plus an offset (``advance`` grows the offset, to skip a wait in a demo);
* ``manual``: a stored instant that only ``advance`` (or ``set``) moves; tests and demos are
  fully deterministic with it.

Called by ``controller.platform.sim.simulator`` (to read and move the clock) and by
``controller.cli_platform`` (``parse_duration`` for ``--advance``, ``--latency`` and friends).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

_DURATION = re.compile(r"^\s*(?P<value>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``2m``, ``1h``, ``1.5`` (plain = seconds).

    Raises ``ValueError`` with a message a person understands on anything else.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: use a number of seconds or a number with a unit, "
            "e.g. 30s, 2m, 1h, 1.5"
        )
    return float(match["value"]) * _UNIT_SECONDS[match["unit"] or "s"]


def to_datetime(epoch: float) -> datetime:
    """An aware UTC datetime from epoch seconds (the simulator stores epoch seconds)."""
    return datetime.fromtimestamp(epoch, tz=UTC)


def to_epoch(moment: datetime) -> float:
    """Epoch seconds of an aware datetime (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class ClockMode(StrEnum):
    REAL = "real"
    MANUAL = "manual"


@dataclass(frozen=True)
class ClockSetting:
    """The persisted clock: a mode, the manual instant and the real-time offset."""

    mode: ClockMode = ClockMode.REAL
    #: The current instant of a manual clock (epoch seconds); unused in real mode.
    manual_now: float = 0.0
    #: Seconds added to host time in real mode (grown by ``advance``).
    offset: float = 0.0

    def now(self) -> float:
        """The simulator's current time in epoch seconds."""
        if self.mode is ClockMode.MANUAL:
            return self.manual_now
        return time.time() + self.offset

    def advanced(self, seconds: float) -> ClockSetting:
        """The same clock moved ``seconds`` forward (never backward)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        if self.mode is ClockMode.MANUAL:
            return ClockSetting(self.mode, self.manual_now + seconds, self.offset)
        return ClockSetting(self.mode, self.manual_now, self.offset + seconds)

    def to_manual(self, at: float | None = None) -> ClockSetting:
        """A manual clock stopped at ``at`` (default: the current simulator time)."""
        start = self.now() if at is None else at
        return ClockSetting(ClockMode.MANUAL, start, 0.0)

    def to_real(self) -> ClockSetting:
        """A real clock; it keeps an offset if needed so that time never runs backward."""
        return ClockSetting(ClockMode.REAL, 0.0, max(0.0, self.now() - time.time()))

    def to_dict(self) -> dict[str, object]:
        return {"mode": str(self.mode), "manual_now": self.manual_now, "offset": self.offset}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ClockSetting:
        manual_now = data.get("manual_now", 0.0)
        offset = data.get("offset", 0.0)
        return cls(
            ClockMode(str(data.get("mode", "real"))),
            float(manual_now) if isinstance(manual_now, int | float) else 0.0,
            float(offset) if isinstance(offset, int | float) else 0.0,
        )
