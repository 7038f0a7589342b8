"""The cursors of ``list_releases``: "every change up to here, on this platform", as a token.

A cursor is the URL-safe base64 of ``relctl-sim/1 <platform id> <change sequence>``: the
identity of the simulator database that handed it out (``meta.platform_id``) and the highest
change sequence the caller has seen. The caller treats it as opaque; the simulator reads it
back with :func:`read_cursor` and refuses, with one clear ``NotFound``, a token it cannot have
made: garbled text, another database's identity (a different or re-created database), or a
sequence beyond the database's last change (a database restored from an older copy).

Pure functions; called by :class:`controller.platform.sim.Simulator` (``list_releases``).
"""

from __future__ import annotations

import base64
import binascii
import re

from controller.platform.errors import NotFound

__all__ = ["MAX_CURSOR_LENGTH", "make_cursor", "read_cursor"]

_PREFIX = "relctl-sim/1"
_BODY = re.compile(r"relctl-sim/1 (?P<platform>[0-9a-f]{32}) (?P<seq>0|[1-9][0-9]{0,17})")
#: Longest token ``read_cursor`` decodes; anything longer is garbled by definition.
MAX_CURSOR_LENGTH = 128

_START_OVER = "list from the start (since=None)"


def make_cursor(platform_id: str, seq: int) -> str:
    """The token for "changes up to ``seq`` of the platform database ``platform_id``"."""
    text = f"{_PREFIX} {platform_id} {seq}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def read_cursor(token: str, platform_id: str, last_change: int) -> int:
    """The change sequence a cursor of this platform carries.

    ``last_change`` is the database's highest change sequence. Raises NotFound (naming what is
    wrong and to list from the start) for a garbled token, another database's cursor or a
    sequence this database has not reached.
    """
    body = _decode(token)
    match = _BODY.fullmatch(body) if body is not None else None
    if match is None:
        raise NotFound(f"cursor {_shown(token)} is not a list_releases cursor: {_START_OVER}")
    if match["platform"] != platform_id:
        raise NotFound(
            f"cursor {_shown(token)} is not from this platform (another or a re-created "
            f"platform database): {_START_OVER}"
        )
    seq = int(match["seq"])
    if seq > last_change:
        raise NotFound(
            f"cursor {_shown(token)} is ahead of this platform's last change ({seq} > "
            f"{last_change}; was the database restored from an older copy?): {_START_OVER}"
        )
    return seq


def _decode(token: str) -> str | None:
    if not isinstance(token, str) or not 0 < len(token) <= MAX_CURSOR_LENGTH:
        return None
    if not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return raw.decode("ascii")
    except (binascii.Error, ValueError):
        return None


def _shown(token: object) -> str:
    """The token as a refusal quotes it: cut, so a huge value does not flood a message."""
    text = repr(token)
    return text if len(text) <= 60 else text[:57] + "..."
