"""Patterns from the repository, matched in linear time: RE2, whole-string semantics.

A release repository is attacker input, and so is every regular expression it holds
(``userIdPattern`` in ``relctl.yaml``). Python's ``re`` backtracks: ``^([0-9]+)+$`` against
a long id takes exponential time. RE2 (``google-re2``) guarantees time linear in the input
and refuses what needs backtracking (backreferences, lookaround). A pattern must match the
whole id (:func:`full_match`): ``$`` never accepts a trailing newline, and ``[0-9]``/``\\d``
are ASCII digits only. Used by ``config`` (compile at load) and ``releases`` (tester ids).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import re2

#: Compiled patterns kept per process (a repository declares a handful).
_CACHE_SIZE = 256
#: Longest RE2 error text quoted in a problem (it can repeat part of the pattern).
_REASON_LIMIT = 120

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern on stderr

try:  # the binding's own anchored match: ~4x cheaper per id than re2's Python-side wrapper
    from re2 import _re2

    _ANCHOR_BOTH: Any = _re2.RE2.Anchor.ANCHOR_BOTH
except (ImportError, AttributeError):  # pragma: no cover - another google-re2 layout
    _ANCHOR_BOTH = None

#: A compiled pattern: whether all of a text matches it.
FullMatch = Callable[[str], bool]


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message says why (cut short)."""


def _sixteen_digits(text: str) -> bool:
    """``^[0-9]{16}$`` without RE2: exactly sixteen ASCII digits."""
    return len(text) == 16 and text.isascii() and text.isdigit()


#: Patterns relctl itself ships, with an equivalent test in Python (no RE2 call per id, which
#: was a fifth of checking a manifest's testers). Only these exact sources; anything a
#: repository writes goes to RE2. ``tests/test_manifests.py`` checks the equivalence.
_BUILT_IN: dict[str, FullMatch] = {r"^[0-9]{16}$": _sixteen_digits}


@lru_cache(maxsize=_CACHE_SIZE)
def compile_pattern(source: str) -> FullMatch:
    """The full-match test of the RE2 pattern ``source``; raises :class:`PatternError`."""
    built_in = _BUILT_IN.get(source)
    if built_in is not None:
        return built_in
    try:
        program = re2.compile(source, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        reason = str(reason)
        if len(reason) > _REASON_LIMIT:
            reason = f"{reason[:_REASON_LIMIT]}…"
        raise PatternError(reason) from None
    raw: Any = getattr(program, "_regexp", None)
    if _ANCHOR_BOTH is None or not callable(getattr(raw, "Match", None)):
        return lambda text: program.fullmatch(text) is not None  # pragma: no cover

    def full_match(text: str) -> bool:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no id
            return False
        return bool(raw.Match(_ANCHOR_BOTH, data, 0, len(data))[0][0] >= 0)

    return full_match


def full_match(source: str, text: str) -> bool:
    """Whether all of ``text`` matches the pattern ``source`` (compiled once, cached)."""
    return compile_pattern(source)(text)
