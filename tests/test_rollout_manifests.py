"""Rollouts in the repository: located problems for schedules an app cannot follow, unknown
templates and bad conditions; the rollout block of the status file (same state, same bytes,
valid against its schema); the textual edit behind ``relctl promote`` and friends."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml
from gitutil import isolate_git
from test_check import ACCESS as CHECK_ACCESS
from test_check import BUDI, MARIA, Repo
from test_check import GCASH as CHECK_GCASH

from controller.commands import CommandError, edit_rollout
from controller.manifests import Severity, load_repository
from controller.manifests.yamlload import load_yaml
from controller.model import (
    AnalysisRun,
    Phase,
    RolloutProgress,
    Status,
    StepKind,
    Verdict,
)
from controller.output.text import schedule_text
from controller.status import parse_status, render_status

BASE = Path(__file__).parent / "data" / "base"
SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "status.schema.json"

TEMPLATES = """\
analysisTemplates:
  crash:
    metrics:
      - name: crash-rate
        provider: platform
        query: crashRate
        successCondition: {condition}
"""

MANIFEST = """\
apiVersion: relctl/v1
kind: Release
metadata:
  miniProgram: shop
  targetApp: {app}
spec:
  version: "1.5.0"
  rollout:
    steps:
{steps}
"""


def repo_with(tmp_path: Path, app: str, steps: str, condition: str = "result < 1.5") -> Path:
    root = tmp_path / "repo"
    shutil.copytree(BASE, root)
    config = root / "relctl.yaml"
    config.write_text(config.read_text() + TEMPLATES.format(condition=condition))
    (root / "releases" / "shop" / f"{app}.yaml").write_text(MANIFEST.format(app=app, steps=steps))
    return root


def test_a_schedule_loads_with_steps_snapped_and_templates_resolved(tmp_path: Path) -> None:
    steps = "      - grayscale: 20\n      - pause: {duration: 1h30m}\n" + (
        "      - analysis: {template: crash}\n      - grayscale: 100\n"
    )
    result = load_repository(repo_with(tmp_path, "tng", steps))
    (release,) = [r for r in result.releases if r.key == "shop/tng"]
    rollout = release.spec.rollout
    assert rollout is not None
    assert [s.kind for s in rollout.steps] == [
        StepKind.GRAYSCALE, StepKind.PAUSE, StepKind.ANALYSIS, StepKind.GRAYSCALE,
    ]  # fmt: skip
    assert rollout.steps[0].grayscale == 30  # tng offers 10, 30, 50
    assert rollout.steps[1].duration == timedelta(hours=1, minutes=30)
    assert rollout.steps[2].template is not None
    snapped = [p for p in result.problems if p.code == "rollout-snapped"]
    assert len(snapped) == 1 and snapped[0].severity is Severity.WARNING
    assert (snapped[0].file, snapped[0].path) == (
        "releases/shop/tng.yaml",
        "spec.rollout.steps[0].grayscale",
    )


@pytest.mark.parametrize(
    ("steps", "code", "line"),
    [
        ("      - grayscale: 40\n      - grayscale: 45\n", "rollout-step", 11),
        ("      - grayscale: 30\n      - grayscale: 10\n", "rollout-step", 11),
        ("      - analysis: {template: nope}\n      - grayscale: 100\n", "unknown-template", 10),
        ("      - pause: {}\n", "rollout-step", 10),
    ],
    ids=["snaps-to-the-same-value", "falls", "unknown-template", "no-grayscale-step"],
)
def test_a_schedule_the_app_cannot_follow_is_refused_where_it_is(
    tmp_path: Path, steps: str, code: str, line: int
) -> None:
    result = load_repository(repo_with(tmp_path, "tng", steps))
    assert "shop/tng" not in {r.key for r in result.releases}
    found = [p for p in result.problems if p.code == code]
    assert found and found[0].file == "releases/shop/tng.yaml"
    assert found[0].line == line


def test_a_condition_outside_the_language_is_refused_in_relctl_yaml(tmp_path: Path) -> None:
    root = repo_with(tmp_path, "gcash", "      - grayscale: 100\n", "__import__('os')")
    result = load_repository(root)
    (problem,) = [p for p in result.problems if p.code == "condition"]
    assert problem.file == "relctl.yaml"
    assert problem.path == "analysisTemplates.crash.metrics[0].successCondition"


def test_grayscale_and_rollout_together_are_refused(tmp_path: Path) -> None:
    root = repo_with(tmp_path, "gcash", "      - grayscale: 100\n")
    manifest = root / "releases/shop/gcash.yaml"
    manifest.write_text(
        manifest.read_text().replace(
            '  version: "1.5.0"\n', '  version: "1.5.0"\n  grayscale: 10\n'
        )
    )
    result = load_repository(root)
    assert "rollout-with-grayscale" in {p.code for p in result.problems}


# --------------------------------------------------------------------------------------------
# the status file
# --------------------------------------------------------------------------------------------


def rollout_status() -> Status:
    at = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    progress = RolloutProgress(
        step=2,
        step_started_at=at,
        exposure=10,
        runs=(
            AnalysisRun(
                "crash-rate", at, 7.5, 10000, "result >= 5", Verdict.FAILED, "crash-rate = 7.5"
            ),
            AnalysisRun(
                "error-rate", at, None, None, "result < 2", Verdict.INCONCLUSIVE, "no data"
            ),
        ),
        promoted="2026-12-03T07:00:00Z",
        halt="AnalysisFailed",
        message="step 3/6 (analysis crash) failed",
        next_action="relctl retry",
        next_time=at + timedelta(hours=1),
    )
    return Status(
        mini_program="shop",
        target_app="gcash",
        version="1.5.0",
        observed_commit="0123456789abcdef0123456789abcdef01234567",
        spec_hash="5f0c2b1a9e8d7c6b",
        phase=Phase.HALTED,
        grayscale=10,
        rollout=progress,
    )


def test_the_rollout_block_round_trips_to_the_same_bytes() -> None:
    status = rollout_status()
    data = render_status(status)
    parsed = parse_status(data, file="status/shop/gcash.yaml")
    assert parsed == status
    assert render_status(parsed) == data


def test_the_rollout_block_is_valid_against_the_status_schema() -> None:
    data = render_status(rollout_status())
    document = load_yaml(data).value
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors(document)) == []
    assert document["status"]["rollout"]["halt"]["reason"] == "AnalysisFailed"


# --------------------------------------------------------------------------------------------
# commands: the textual edit
# --------------------------------------------------------------------------------------------

TEXT = """\
spec:
  version: "1.5.0"   # keep this comment
  rollout:
    # the schedule
    steps:
      - grayscale: 1
    promotedAt: "old"
  other: 1
"""


def test_a_command_sets_its_field_and_keeps_comments() -> None:
    edited = edit_rollout(TEXT, [("promotedAt", '"new"'), ("paused", "true")])
    assert "# keep this comment" in edited and "# the schedule" in edited
    rollout = yaml.safe_load(edited)["spec"]["rollout"]
    assert rollout["promotedAt"] == "new" and rollout["paused"] is True
    assert yaml.safe_load(edited)["spec"]["other"] == 1


def test_a_command_needs_a_rollout_block() -> None:
    with pytest.raises(CommandError, match=r"no spec\.rollout"):
        edit_rollout("spec:\n  grayscale: 10\n", [("paused", "true")])


def test_plan_shows_the_snapped_schedule_and_its_earliest_timeline(tmp_path: Path) -> None:
    steps = (
        "      - grayscale: 20\n      - pause: {duration: 2h}\n      - grayscale: 50\n"
        "      - pause: {}\n      - grayscale: 100\n"
    )
    result = load_repository(repo_with(tmp_path, "tng", steps))
    assert result.config is not None
    (release,) = [r for r in result.releases if r.key == "shop/tng"]
    lines = schedule_text(release, result.config.target_apps["tng"])
    assert lines == [
        "  schedule of shop/tng 1.5.0 (Touch 'n Go eWallet offers 10, 30, 50, 100):",
        "    1. +0s  grayscale 30%",
        "    2. +0s  pause 2h",
        "    3. +2h  grayscale 50%",
        "    4. +2h  pause until promoted",
        "    5. +after promote 0s  grayscale 100%",
    ]


def test_the_rollout_examples_are_valid_in_the_sample_repository(tmp_path: Path) -> None:
    """examples/rollouts/coupons/*.yaml (used by make demo) under the project's relctl.yaml."""
    project = Path(__file__).resolve().parents[1]
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("relctl.yaml", "access.yaml"):
        shutil.copy2(project / name, root / name)
    shutil.copytree(project / "examples" / "rollouts" / "coupons", root / "releases" / "coupons")
    result = load_repository(root)
    assert result.ok and result.problems == (), result.problems
    assert sorted(r.key for r in result.releases if r.spec.rollout is not None) == [
        "coupons/dana", "coupons/gcash", "coupons/tng",
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# relctl check: who may abort, promote --full, override a freeze
# --------------------------------------------------------------------------------------------

JOSE = ("Jose", "jose@example.com")
ACCESS_WITH_DEVELOPER = (
    CHECK_ACCESS
    + "  - {email: jose@example.com, name: Jose, role: developer, miniPrograms: [shop]}\n"
)
GCASH_ROLLOUT = MANIFEST.format(
    app="gcash", steps="      - grayscale: 10\n      - grayscale: 100\n"
)


@pytest.mark.parametrize(
    ("line", "who", "refused"),
    [
        ("    abort: true\n", JOSE, True),
        ("    abort: true\n", BUDI, False),
        ("    full: true\n", JOSE, True),
        ("    full: true\n", MARIA, False),
        ("    overrideFreeze: true\n", BUDI, True),
        ("    overrideFreeze: true\n", MARIA, False),
        ("    paused: true\n", JOSE, False),
    ],
    ids=["abort-developer", "abort-owner", "full-developer", "full-master",
         "override-owner", "override-master", "pause-developer"],
)  # fmt: skip
def test_check_enforces_who_may_issue_which_command(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    line: str,
    who: tuple[str, str],
    refused: bool,
) -> None:
    isolate_git(monkeypatch, tmp_path / "home")
    repo = Repo(
        tmp_path / "repo", {"access.yaml": ACCESS_WITH_DEVELOPER, CHECK_GCASH: GCASH_ROLLOUT}
    )
    changed = GCASH_ROLLOUT.replace("  rollout:\n", "  rollout:\n" + line)
    result = repo.pull_request({CHECK_GCASH: changed}, who)
    found = [p for p in result.problems if p.code == "rollout-command"]
    assert bool(found) is refused, result.problems
    if refused:
        assert found[0].path.startswith("spec.rollout.")
        assert who[1] in found[0].message
