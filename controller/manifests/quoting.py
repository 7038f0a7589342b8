"""How a value from the repository appears in a problem message: quoted, and cut short.

Every repository value a message shows goes through :func:`quote`, so a 900 kB description
gives a message of about a hundred characters, not a megabyte, and a value with a newline or
a control character never splits a line of ``relctl validate`` output.
"""

from __future__ import annotations

#: Characters of a value shown before it is cut.
QUOTE_LIMIT = 120


def quote(value: object, *, bare: bool = False, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, cut to about ``limit`` characters: ``'aaaa…' (900,000 characters)``.

    ``bare`` shows a printable string as written, without quotes (for messages that always
    showed ids and numbers that way); anything else is still a ``repr``.
    """
    if isinstance(value, str):
        head = value[:limit]
        if bare and value.isprintable():
            shown = head if len(value) <= limit else f"{head}…"
        else:
            shown = repr(head)
            if len(value) > limit:
                shown = f"{shown[:-1]}…{shown[-1]}"
        return shown if len(value) <= limit else f"{shown} ({len(value):,} characters)"
    try:
        shown = repr(value)
    except ValueError:  # an integer with more digits than Python converts
        return f"<{type(value).__name__}>"
    if len(shown) <= limit:
        return shown
    return f"{shown[:limit]}… ({len(shown):,} characters)"


def cut(message: str, limit: int = 4 * QUOTE_LIMIT) -> str:
    """A message built by another library (a validator, the YAML parser), which may quote a
    value in its own way, cut to ``limit`` characters and kept on one line."""
    one_line = message if message.isprintable() else quote(message, limit=limit)
    if len(one_line) <= limit:
        return one_line
    return f"{one_line[:limit]}… ({len(message):,} characters)"
