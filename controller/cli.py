"""The ``relctl`` command line: thin click commands over the library.

Commands parse options, call one library function, and format what it returns (text, json,
github, markdown). Exit codes: 0 success, 1 the checked thing is invalid / did not converge,
2 usage or internal error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import click

from controller import __version__
from controller.platform.cli import platform


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="relctl")
def cli() -> None:
    """relctl: declarative, reviewable releases of mini programs to partner super apps."""


cli.add_command(platform)


def main() -> None:
    """Console-script entry point."""
    cli()
