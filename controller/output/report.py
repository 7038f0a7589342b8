"""One command's whole standard output, in the format its ``--format`` asks for.

Each ``*_report`` function picks the module of the format (``text``, ``table``,
``jsondata``, ``markdown``, ``github``) and returns everything the command prints on
standard output, newline-terminated, or ``""`` when there is nothing to print: the CLI
echoes it with ``nl=False``. Called by ``controller.cli``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from controller.output.github import github_annotation
from controller.output.jsondata import (
    pass_json,
    plan_json,
    preview_json,
    rollout_json,
    run_pass_json,
    to_json,
)
from controller.output.markdown import plan_markdown, preview_markdown
from controller.output.text import pass_lines, plan_text, preview_text, problem_line, rollout_text

if TYPE_CHECKING:
    from controller.manifests import Problem
    from controller.model import Release, Status
    from controller.output.table import StatusRow
    from controller.preview import Preview
    from controller.reconcile import PassResult, ReleaseResult

__all__ = [
    "plan_report",
    "preview_report",
    "problems_report",
    "reconcile_report",
    "run_report",
    "status_report",
    "trust_report",
]


def _lines(lines: Iterable[str]) -> str:
    """Lines as standard output: each ends with a newline; no lines, no output."""
    return "".join(f"{line}\n" for line in lines)


def problems_report(problems: Iterable[Problem], output: str, summary: str) -> str:
    """Located problems as ``validate`` and ``check`` print them: text (with hints), the
    stable json list (docs/validate.md), or GitHub workflow annotations; text and github end
    with ``summary``."""
    if output == "json":
        return to_json([p.to_dict() for p in problems]) + "\n"
    lines: list[str] = []
    for problem in problems:
        if output == "github":
            lines.append(github_annotation(problem))
        else:
            lines.append(problem_line(problem))
            if problem.hint:
                lines.append(f"  hint: {problem.hint}")
    lines.append(summary)
    return _lines(lines)


def reconcile_report(result: PassResult, output: str) -> str:
    """``relctl reconcile``: the pass as json, or its lines (and a word when nothing changed)."""
    if output == "json":
        return to_json(pass_json(result)) + "\n"
    lines = pass_lines(result)
    if result.pushed is None:
        lines.append(f"nothing changed at {result.commit[:7]}; no commit")
    return _lines(lines)


def run_report(result: PassResult, number: int, output: str, *, verbose: bool) -> str:
    """What ``relctl run`` prints after pass ``number``: nothing when nothing moved (unless
    ``verbose``); in json, one compact line per pass (JSON Lines)."""
    lines = pass_lines(result, number)
    if output == "json":
        if not (lines or verbose):
            return ""
        return json.dumps(run_pass_json(result, number)) + "\n"
    if verbose and result.pushed is None:
        lines.append(f"pass {number}: nothing changed at {result.commit[:7]}")
    return _lines(lines)


def plan_report(results: list[ReleaseResult], output: str) -> str:
    """``relctl plan`` (without --base): one line per release, json, or a markdown table."""
    if output == "json":
        return to_json([plan_json(r) for r in results]) + "\n"
    if output == "markdown":
        return plan_markdown(results) + "\n"
    return _lines(plan_text(r) for r in results)


def preview_report(preview: Preview, output: str) -> str:
    """``relctl plan --base``: one line per release, json, or one pull-request comment."""
    if output == "json":
        return to_json(preview_json(preview)) + "\n"
    if output == "markdown":
        return preview_markdown(preview)
    return preview_text(preview) + "\n"


def status_report(rows: Sequence[StatusRow], output: str, width: int) -> str:
    """``relctl status``: the rows as json, or the table with its message cut to ``width``."""
    if output == "json":
        return to_json(rows) + "\n"
    if not rows:
        return "no status files yet: has the controller run a pass?\n"
    from controller.output.table import format_status_table  # only `relctl status` pays it

    # The table ends with a newline of its own, so the text ends with an empty line.
    return format_status_table(rows, width=width) + "\n"


def rollout_report(release: Release, status: Status | None, output: str) -> str:
    """``relctl status MP APP``: one release's rollout, as text or json."""
    if output == "json":
        return to_json(rollout_json(release, status)) + "\n"
    return rollout_text(release, status)


def trust_report(summary: dict[str, object], output: str) -> str:
    """``relctl trust show`` / ``reset``: the controller's trust in main."""
    if output == "json":
        return to_json(summary) + "\n"
    refusals = summary.get("refusals")
    lines = [
        f"anchor:        {summary.get('anchor') or 'none (the controller has not started)'}",
        f"started by:    {summary.get('how') or '-'}",
        f"judged up to:  {summary.get('commit') or '-'}",
        f"authorized:    {summary.get('authorized', 0)} file(s)",
    ]
    if isinstance(refusals, dict) and refusals:
        lines.append("refused changes still in effect:")
        lines.extend(f"  {path}: {message}" for path, message in sorted(refusals.items()))
    return _lines(lines)
