"""``relctl platform ...``: a person plays the platform from the command line.

Click's CliRunner over the real ``relctl`` group and a temporary simulator database.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from controller.cli import cli
from controller.platform.errors import NotFound
from controller.platform.protocol import Stage
from controller.platform.sim import Simulator

COMMANDS = [
    "init",
    "set-app",
    "apps",
    "upload",
    "releases",
    "show",
    "review",
    "metrics",
    "clock",
    "faults",
    "who-gets",
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "platform.db"


def run(db: Path, *args: str) -> Result:
    runner = CliRunner()
    return runner.invoke(cli, ["platform", *args], env={"RELCTL_PLATFORM_DB": str(db)})


def ok(db: Path, *args: str) -> str:
    result = run(db, *args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli, ["platform", command, "--help"])
    assert result.exit_code == 0
    assert "--db" in result.output


def test_a_demo_session_from_upload_to_qr_code(db: Path, tmp_path: Path) -> None:
    ok(db, "init", "--apps", "gcash,dana", "--manual-clock", "--at", "2025-01-01")
    ok(db, "set-app", "gcash", "--review", "manual", "--build-seconds", "30s")
    ok(db, "upload", "shop", "1.0.0", "--compat-failures", "ios:3g")
    with Simulator(db) as sim:  # the controller's side
        release = sim.create_release("shop", "1.0.0", "gcash", "production", idempotency_key="1")
    assert "BUILDING" in ok(db, "releases")
    ok(db, "clock", "--advance", "30s")
    with Simulator(db) as sim:
        sim.run_compatibility_test(release.release_id, idempotency_key="2")
        sim.advance(20)
        sim.apply(release.release_id, idempotency_key="3")
    assert "UNDER_REVIEW" in ok(db, "show", release.release_id)
    assert "RELEASE_PREPARATION" in ok(db, "review", release.release_id, "--approve")
    with Simulator(db) as sim:
        sim.set_grayscale(release.release_id, 40, idempotency_key="4")
        sim.full_release(release.release_id, idempotency_key="5")
        sim.create_qr_code(release.release_id, idempotency_key="6")
    shown = json.loads(ok(db, "show", release.release_id, "--format", "json"))
    assert shown["stage"] == "FULL_RELEASE"
    assert shown["compatibility"]["pass_rate"] == 87.5
    assert shown["qr_code"]["url"].startswith("https://render.alipay-plus.example/p/s/i/?")
    svg, png = tmp_path / "qr.svg", tmp_path / "qr.png"
    ok(db, "show", release.release_id, "--qr-svg", str(svg), "--qr-png", str(png))
    assert svg.read_text().startswith("<svg") and png.read_bytes()[:4] == b"\x89PNG"
    assert "1.0.0" in ok(db, "who-gets", "shop", "gcash", "2088000000000001")
    metrics = json.loads(
        ok(db, "metrics", release.release_id, "--crash-rate", "0.5", "--format", "json")
    )
    assert metrics == {"crash_rate": 0.5, "error_rate": 0.0, "users_on_version": 100_000}


def test_review_reject_records_the_reason(db: Path) -> None:
    ok(db, "init", "--apps", "gcash", "--manual-clock")
    ok(db, "set-app", "gcash", "--review", "manual", "--build-seconds", "0", "--test-seconds", "0")
    ok(db, "upload", "shop", "1.0.0")
    with Simulator(db) as sim:
        rid = sim.create_release("shop", "1.0.0", "gcash", "p", idempotency_key="1").release_id
        sim.run_compatibility_test(rid, idempotency_key="2")
        sim.apply(rid, idempotency_key="3")
    ok(db, "review", rid, "--reject", "the logo is blurry")
    with Simulator(db) as sim:
        snapshot = sim.get_release(rid)
    assert snapshot.stage is Stage.REJECTED
    assert snapshot.review is not None and snapshot.review.reason == "the logo is blurry"


def test_a_platform_refusal_is_one_line_on_stderr_with_exit_1(db: Path) -> None:
    ok(db, "init")
    result = run(db, "show", "R-000042")
    assert result.exit_code == 1
    assert result.stderr == "error: NotFound: release 'R-000042' does not exist on the platform\n"
    ok(db, "upload", "shop", "1.0.0")
    result = run(db, "upload", "shop", "1.0.0")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: Conflict: shop 1.0.0 is already uploaded")


def test_uploading_an_older_version_is_a_one_line_refusal_naming_the_newest(db: Path) -> None:
    ok(db, "init")
    ok(db, "upload", "shop", "1.0.0")

    result = run(db, "upload", "shop", "0.9.0")

    assert result.exit_code == 1
    assert result.stderr == (
        "error: Conflict: shop 0.9.0 is lower than 1.0.0, the newest uploaded version of shop: "
        "versions only increase; upload a version greater than 1.0.0, e.g. 1.0.1\n"
    )
    assert result.stdout == ""
    ok(db, "upload", "shop", "1.0.1")
    with Simulator(db) as sim:
        assert [v.version for v in sim.versions("shop")] == ["1.0.0", "1.0.1"]


@pytest.mark.parametrize(
    "args",
    [
        ["review", "R-000001"],  # neither --approve nor --reject
        ["review", "R-000001", "--approve", "--reject", "no"],
        ["clock", "--advance", "soon"],
        ["faults", "--error-rate", "2"],
        ["upload", "shop", "1.0"],
        ["upload", "shop", "1.0.0", "--compat-failures", "windows"],
        ["set-app", "gcash", "--grayscale-values", "10,abc"],
        ["set-app", "gcash", "--pilot", "maybe"],
    ],
)
def test_usage_errors_exit_2(db: Path, args: list[str]) -> None:
    ok(db, "init")  # a missing database is refused with exit 2 too: keep that out of the way
    result = run(db, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_set_app_and_apps_show_the_settings(db: Path) -> None:
    ok(db, "init")
    ok(
        db,
        "set-app",
        "dana",
        "--pilot",
        "required",
        "--review",
        "auto",
        "--review-after",
        "2m",
        "--testers-max",
        "10",
        "--grayscale-values",
        "10,30,50",
    )
    apps = json.loads(ok(db, "apps", "--format", "json"))
    assert apps == [
        {
            "app_id": "dana",
            "banned_words": [],
            "build_seconds": 10.0,
            "grayscale_values": [10, 30, 50],
            "name": "",
            "pilot_required": True,
            "review": "auto",
            "review_after": 120.0,
            "test_seconds": 20.0,
            "testers_max": 10,
            "user_id_pattern": "^[0-9]{16}$",
            "users": 100000,
        }
    ]
    ok(db, "set-app", "dana", "--testers-max", "20")  # other settings are kept
    assert json.loads(ok(db, "apps", "--format", "json"))[0]["review_after"] == 120.0
    assert "10,30,50,100" in ok(db, "apps")


def test_clock_manual_advance_and_real(db: Path) -> None:
    ok(db, "init")
    assert "manual, now 2025-01-01T00:00:00Z" in ok(
        db, "clock", "--manual", "--at", "2025-01-01T00:00:00"
    )
    assert "2025-01-01T00:01:30Z" in ok(db, "clock", "--advance", "1.5m")
    data = json.loads(ok(db, "clock", "--format", "json"))
    assert data["mode"] == "manual" and data["now"] == "2025-01-01T00:01:30Z"
    assert "clock: real" in ok(db, "clock", "--real")


def test_faults_can_be_set_and_turned_off(db: Path) -> None:
    ok(db, "init")
    out = ok(db, "faults", "--error-rate", "0.3", "--unknown-rate", "0.2", "--latency", "50ms")
    assert "error rate 0.3" in out and "latency 0.05s" in out
    data = json.loads(ok(db, "faults", "--seed", "9", "--format", "json"))
    assert data["error_rate"] == 0.3 and data["seed"] == 9  # unnamed settings kept
    assert ok(db, "faults", "--off").strip() == "faults: off"


def test_unknown_target_app_points_to_set_app(db: Path) -> None:
    ok(db, "init")
    ok(db, "upload", "shop", "1.0.0")
    with Simulator(db) as sim, pytest.raises(NotFound, match="relctl platform set-app tng"):
        sim.create_release("shop", "1.0.0", "tng", "production", idempotency_key="x")


def test_db_option_and_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["platform", "init"], env={"RELCTL_PLATFORM_DB": None})
    assert result.exit_code == 0, result.output
    assert (tmp_path / ".relctl" / "platform.db").exists()
    other = tmp_path / "other.db"
    result = CliRunner().invoke(cli, ["platform", "init", "--db", str(other)])
    assert result.exit_code == 0 and other.exists()
    result = CliRunner().invoke(cli, ["platform", "apps", "--db", str(other)])
    assert result.exit_code == 0 and "no target apps" in result.output


def test_db_can_be_given_before_the_command(tmp_path: Path) -> None:
    group_db, command_db = tmp_path / "group.db", tmp_path / "command.db"
    runner = CliRunner()
    assert runner.invoke(cli, ["platform", "init", "--db", str(command_db)]).exit_code == 0
    result = runner.invoke(cli, ["platform", "--db", str(group_db), "init", "--apps", "gcash"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["platform", "--db", str(group_db), "apps"])
    assert "gcash" in result.output
    # the command's own --db wins over the group's and over the environment
    result = runner.invoke(
        cli,
        ["platform", "--db", str(group_db), "apps", "--db", str(command_db)],
        env={"RELCTL_PLATFORM_DB": str(group_db)},
    )
    assert result.exit_code == 0 and "no target apps" in result.output
