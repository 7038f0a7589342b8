"""``relctl platform ...``: play the platform (simulator) by hand."""

from __future__ import annotations

import click


@click.group()
def platform() -> None:
    """Operate the embedded platform simulator (for demos, tests and curious users)."""
