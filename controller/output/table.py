"""Aligned text tables: ``relctl status`` and the simulator's lists.

``status_rows`` turns status files into the rows of ``relctl status`` (the json output is
the rows as they are); ``format_status_table`` aligns them in terminal columns, counting
wide (CJK) characters as two, stripping control characters, and cutting only the message to
the terminal's width. ``app_table`` and ``release_table`` are ``relctl platform apps`` and
``releases`` (plain ASCII cells). Called by :mod:`controller.output`,
``controller.cli_platform`` and ``controller.demo``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final, TypedDict

from controller.model import Condition, ConditionType, Phase, Status
from controller.output.text import human_duration, iso_time
from controller.platform.protocol import ReleaseSnapshot
from controller.platform.sim.model import AppSettings, ReviewMode
from controller.status import format_time

__all__ = [
    "StatusRow",
    "app_table",
    "display_width",
    "format_status_table",
    "release_table",
    "status_rows",
    "table",
]

# --------------------------------------------------------------------------------------------
# `relctl status`: rows and a plain text table
# --------------------------------------------------------------------------------------------


class StatusRow(TypedDict):
    """One release in ``relctl status`` (JSON output uses these keys as they are)."""

    miniProgram: str
    targetApp: str
    version: str
    phase: str
    grayscale: int
    #: Age of the Ready condition's last transition (``3m``), or ``-`` when there is none.
    since: str
    #: The same moment as RFC 3339, or None.
    sinceTime: str | None
    reason: str
    message: str


def _summary_condition(status: Status) -> Condition | None:
    """The condition a person reads first: Ready, else whatever condition there is."""
    return status.condition(ConditionType.READY) or next(iter(status.conditions), None)


def status_rows(statuses: Iterable[Status], now: datetime) -> list[StatusRow]:
    """The rows of ``relctl status``, sorted by key; messages are whole (not truncated)."""
    rows: list[StatusRow] = []
    for status in sorted(statuses, key=lambda s: (s.mini_program, s.target_app)):
        ready = status.condition(ConditionType.READY)
        summary = _summary_condition(status)
        if summary is not None:
            reason, message = summary.reason, summary.message
        elif status.last_error is not None:
            reason, message = status.last_error.code, status.last_error.message
        else:
            reason, message = "", ""
        rows.append(
            StatusRow(
                miniProgram=status.mini_program,
                targetApp=status.target_app,
                version=status.version,
                phase=Phase(status.phase).value,
                grayscale=status.grayscale,
                since=(
                    "-"
                    if ready is None
                    else human_duration((now - ready.last_transition_time).total_seconds())
                ),
                sinceTime=None if ready is None else format_time(ready.last_transition_time),
                reason=reason,
                message=message,
            )
        )
    return rows


_TABLE_HEADERS: Final = (
    "MINI PROGRAM",
    "APP",
    "VERSION",
    "PHASE",
    "GRAYSCALE",
    "SINCE",
    "REASON",
    "MESSAGE",
)
_GAP: Final = "  "
_ELLIPSIS: Final = "..."
#: The message column keeps at least this many columns even on a narrow terminal.
_MIN_MESSAGE_WIDTH: Final = 20


def _char_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes (CJK characters take two, combining marks none)."""
    return sum(_char_width(char) for char in text)


def _clean(text: str) -> str:
    """One line of printable text: no newlines, tabs or terminal escape sequences."""
    return " ".join(
        "".join(" " if unicodedata.category(char) == "Cc" else char for char in text).split()
    )


def _truncate(text: str, width: int) -> str:
    if display_width(text) <= width:
        return text
    budget = width - len(_ELLIPSIS)
    kept: list[str] = []
    used = 0
    for char in text:
        used += _char_width(char)
        if used > budget:
            break
        kept.append(char)
    return "".join(kept) + _ELLIPSIS


def _pad(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))


def _cells(row: StatusRow) -> list[str]:
    """The table cells of one row, in the order of ``_TABLE_HEADERS``."""
    return [
        _clean(row["miniProgram"]),
        _clean(row["targetApp"]),
        _clean(row["version"]),
        row["phase"],
        f"{row['grayscale']}%",
        row["since"],
        _clean(row["reason"]),
        _clean(row["message"]),
    ]


def format_status_table(rows: Sequence[StatusRow], width: int = 120) -> str:
    """A plain, aligned text table of ``rows``; the message is cut to fit ``width`` columns.

    Other columns are never cut. The result ends with a newline; with no rows it is the
    header line alone.
    """
    headers = list(_TABLE_HEADERS)
    cells = [_cells(row) for row in rows]
    widths = [
        max([display_width(headers[index])] + [display_width(line[index]) for line in cells])
        for index in range(len(headers))
    ]
    fixed = sum(widths[:-1]) + len(_GAP) * (len(widths) - 1)
    message_width = max(_MIN_MESSAGE_WIDTH, width - fixed)
    lines = []
    for line in [headers, *cells]:
        *leading, message = line
        padded = [_pad(text, widths[index]) for index, text in enumerate(leading)]
        lines.append(_GAP.join([*padded, _truncate(message, message_width)]).rstrip())
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The platform simulator: `relctl platform apps|releases`
# --------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, the header line first (ASCII cells)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


def app_table(apps: Sequence[AppSettings]) -> str:
    """The target apps' platform settings, one row per app."""
    rows = [
        [
            a.app_id,
            "required" if a.pilot_required else "none",
            f"{a.review}"
            + (f" after {a.review_after:g}s" if a.review is not ReviewMode.MANUAL else ""),
            f"{a.build_seconds:g}s",
            f"{a.test_seconds:g}s",
            str(a.testers_max),
            a.describe_grayscale_values(),
            a.user_id_pattern,
        ]
        for a in apps
    ]
    headers = ["APP", "PILOT", "REVIEW", "BUILD", "TEST", "TESTERS", "GRAYSCALE", "USER IDS"]
    return table(headers, rows)


def release_table(releases: Sequence[ReleaseSnapshot]) -> str:
    """Releases as the platform's console lists them, one row per release."""
    rows = [
        [
            r.release_id,
            r.mini_program,
            r.version,
            r.target_app,
            str(r.stage),
            f"{r.grayscale}%",
            iso_time(r.updated_at),
        ]
        for r in releases
    ]
    headers = ["RELEASE", "MINI PROGRAM", "VERSION", "TARGET", "STAGE", "GRAYSCALE", "UPDATED"]
    return table(headers, rows)
