"""Patterns from the repository, matched in linear time: RE2, whole-string semantics.

A release repository is attacker input, and so is every regular expression it holds
(``userIdPattern`` in ``relctl.yaml``). Python's ``re`` backtracks: ``^([0-9]+)+$`` against
a long id takes exponential time. RE2 (``google-re2``) guarantees time linear in the input
and refuses what needs backtracking (backreferences, lookaround). A pattern must match the
whole id (:func:`full_match`): ``$`` never accepts a trailing newline, and ``[0-9]``/``\\d``
are ASCII digits only. Used by ``config`` (compile at load) and ``releases`` (tester ids).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

#: Compiled patterns kept per process (a repository declares a handful).
_CACHE_SIZE = 256
#: Longest RE2 error text quoted in a problem (it can repeat part of the pattern).
_REASON_LIMIT = 120

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern on stderr


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message says why (cut short)."""


@lru_cache(maxsize=_CACHE_SIZE)
def compile_pattern(source: str) -> Any:
    """The RE2 program of ``source``; raises :class:`PatternError`."""
    try:
        return re2.compile(source, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        reason = str(reason)
        if len(reason) > _REASON_LIMIT:
            reason = f"{reason[:_REASON_LIMIT]}…"
        raise PatternError(reason) from None


def full_match(source: str, text: str) -> bool:
    """Whether all of ``text`` matches the pattern ``source`` (compiled once, cached)."""
    return compile_pattern(source).fullmatch(text) is not None
