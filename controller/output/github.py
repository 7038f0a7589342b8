"""GitHub Actions workflow annotations: located problems on a pull request's diff.

``relctl validate --format github`` and ``relctl check --format github`` print one workflow
command per problem (``::error file=...,line=...,col=...,title=...::message``); GitHub shows
them on the changed lines. Called by :func:`controller.output.problems_report`.
"""

from __future__ import annotations

from controller.manifests import Problem, Severity

__all__ = ["github_annotation"]


def github_annotation(problem: Problem) -> str:
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
