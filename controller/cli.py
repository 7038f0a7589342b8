"""The ``relctl`` command line: thin click commands over the library.

Commands parse options, call one library function, and format what it returns (text, json,
github, markdown). Exit codes: 0 success, 1 the checked thing is invalid / did not converge,
2 usage or internal error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from controller import __version__
from controller.manifests import CONFIG_FILE, LoadResult, Problem, Severity, load_repository
from controller.platform.cli import platform


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="relctl")
def cli() -> None:
    """relctl: declarative, reviewable releases of mini programs to partner super apps."""


cli.add_command(platform)


# ---------------------------------------------------------------------------------------------
# relctl validate
# ---------------------------------------------------------------------------------------------


@cli.command()
@click.argument(
    "paths", nargs=-1, type=click.Path(exists=True, path_type=Path), metavar="[PATH]..."
)
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Release repository root (default: the nearest directory up from here with relctl.yaml).",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="text for people, json (docs/validate.md) for tools, github for workflow annotations.",
)
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1).")
def validate(paths: tuple[Path, ...], repo: Path | None, output: str, strict: bool) -> None:
    """Check manifests, relctl.yaml and access.yaml; report every problem with its location.

    With no PATH, checks the whole repository. Exit 0 valid, 1 invalid, 2 usage or internal
    error.
    """
    root = (repo or _find_repo(Path.cwd())).resolve()
    selected: list[Path] = []
    for path in paths:
        full = path.resolve()
        if not full.is_relative_to(root):
            raise click.UsageError(f"{path} is outside the repository {root}")
        selected.append(full)
    try:
        result = load_repository(root, selected or None)
    except Exception as exc:  # a bug in relctl: one line, no traceback
        click.echo(f"relctl: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(2)
    failed = not result.ok or (strict and bool(result.problems))
    if output == "json":
        click.echo(json.dumps([p.to_dict() for p in result.problems], indent=2))
    elif output == "github":
        for problem in result.problems:
            click.echo(_github_annotation(problem))
        click.echo(_summary(result))
    else:
        for problem in result.problems:
            click.echo(_text_line(problem))
            if problem.hint:
                click.echo(f"  hint: {problem.hint}")
        click.echo(_summary(result))
    sys.exit(1 if failed else 0)


def _find_repo(start: Path) -> Path:
    """The nearest directory from ``start`` upward holding relctl.yaml (else ``start``)."""
    for directory in (start, *start.parents):
        if (directory / CONFIG_FILE).is_file():
            return directory
    return start


def _text_line(problem: Problem) -> str:
    field = f"{problem.path}: " if problem.path else ""
    return (
        f"{problem.file}:{problem.line}:{problem.column}: {problem.severity}: "
        f"{field}{problem.message} [{problem.code}]"
    )


def _summary(result: LoadResult) -> str:
    errors, warnings = len(result.errors), len(result.warnings)
    files = f"{len(result.files)} file{'s' if len(result.files) != 1 else ''}"
    if not errors and not warnings:
        return f"{files} valid"
    counts = [f"{errors} error{'s' if errors != 1 else ''}"]
    if warnings:
        counts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return f"{', '.join(counts)} in {files}"


def _github_annotation(problem: Problem) -> str:
    """A GitHub Actions workflow command (``::error file=...,line=...::message``)."""
    level = "error" if problem.severity is Severity.ERROR else "warning"
    title = f"{problem.path} ({problem.code})" if problem.path else problem.code
    message = problem.message + (f"\nhint: {problem.hint}" if problem.hint else "")
    return (
        f"::{level} file={_gh_property(problem.file)},line={problem.line},"
        f"col={problem.column},title={_gh_property(title)}::{_gh_data(message)}"
    )


def _gh_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(value: str) -> str:
    return _gh_data(value).replace(":", "%3A").replace(",", "%2C")


def main() -> None:
    """Console-script entry point."""
    cli()
