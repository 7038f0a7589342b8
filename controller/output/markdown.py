"""Markdown for pull-request comments: ``relctl plan --format markdown`` and ``--base``.

``preview_markdown`` is the comment CI posts on a pull request (``relctl plan --base``); its
first line is :data:`MARKER`, which CI uses to update the same comment in place.
``plan_markdown`` is the next pass as a table. Called by :mod:`controller.output`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from controller.output.jsondata import plan_json

if TYPE_CHECKING:
    from controller.preview import Preview, ReleaseChange
    from controller.reconcile import ReleaseResult

__all__ = ["MARKER", "plan_markdown", "preview_markdown"]

#: The hidden marker CI uses to find and update the plan comment in place.
MARKER: Final = "<!-- relctl-plan -->"


def plan_markdown(results: list[ReleaseResult]) -> str:
    """A markdown table of the next pass, one row per release."""
    lines = [
        "### relctl plan",
        "",
        "| release | version | phase | next action | why |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        data = plan_json(r)
        message = str(data["message"]).replace("|", "\\|")
        lines.append(
            f"| {r.key} | {data['version']} | {data['phase']} | "
            f"{data['action'] or '-'} | {data['reason']}: {message} |"
        )
    return "\n".join(lines)


def preview_markdown(preview: Preview) -> str:
    """One pull-request comment: per release, the transition, the steps and the gates."""
    lines = [MARKER, "### relctl plan: what merging this change will do", ""]
    if not preview.changes:
        lines.append("This change touches no release manifest: the controller will do nothing.")
    for change in preview.changes:
        lines.extend(_markdown_release(change))
    refused = sum(1 for c in preview.changes if c.refused)
    lines.append(
        f"<sub>{len(preview.changes)} release(s) affected, {refused} refused. Projected from "
        f"the status the controller last wrote at `{preview.base[:7]}`; reviews, builds and "
        f"tests happen on the platform's own time.</sub>"
    )
    return "\n".join(lines) + "\n"


def _markdown_release(change: ReleaseChange) -> list[str]:
    mini_program, target_app = change.key.split("/", 1)
    version = change.version_after or change.version_before or "?"
    if (
        change.version_before
        and change.version_after
        and (change.version_before != change.version_after)
    ):
        version = f"{change.version_before} → {change.version_after}"
    transition = (
        change.phase_before
        if change.phase_before == change.phase_after
        else f"{change.phase_before} → {change.phase_after}"
    )
    icon = "⛔" if change.refused else "✅"
    lines = [f"{icon} **{mini_program}** on **{target_app}** {version}: {transition}"]
    if change.steps:
        lines.append(f"- steps: {', then '.join(change.steps)}")
    if change.then:
        lines.append(f"- {change.then}")
    if change.testers_added or change.testers_removed:
        ids = [f"+{t}" for t in change.testers_added]
        ids += [f"-{t}" for t in change.testers_removed]
        lines.append(
            f"- testers: +{len(change.testers_added)} -{len(change.testers_removed)} "
            f"({', '.join(ids)})"
        )
    for problem in change.problems:
        lines.append(
            f"- `{problem.file}:{problem.line}:{problem.column}` {problem.path}: {problem.message}"
        )
    lines.append("")
    return lines
