"""relctl plan --base projects each step with the simulator's own rules (its engine).

``tests/test_preview.py`` covers the command end to end; these tests hold the projection
itself to the platform's rules, including the refusals ``decide`` alone does not foresee.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.model import (
    Event,
    Phase,
    Pilot,
    Release,
    ReleaseSpec,
    RepoConfig,
    Status,
    TargetApp,
)
from controller.platform.rules import Stage
from controller.platform.sim import AppSettings
from controller.preview import _project, _target_app

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SEEN = NOW - timedelta(hours=2)
TESTER = "2088000000000001"


def release(**spec: object) -> Release:
    values: dict[str, object] = {"version": "1.4.0", "pilot": Pilot(testers=(TESTER,))}
    values.update(spec)
    return Release(
        mini_program="shop",
        target_app="gcash",
        environment="production",
        path="releases/shop/gcash.yaml",
        spec=ReleaseSpec(**values),  # type: ignore[arg-type]
    )


def status(stage: Stage, phase: Phase, grayscale: int = 0) -> Status:
    return Status(
        mini_program="shop",
        target_app="gcash",
        version="1.4.0",
        observed_commit="0" * 40,
        spec_hash="0123456789abcdef",
        phase=phase,
        release_id="R-000001",
        stage=stage,
        grayscale=grayscale,
        history=(Event(time=SEEN, reason="Observed", message="seen"),),
    )


def test_a_step_the_platform_would_refuse_is_shown_as_refused_not_as_done() -> None:
    ready = status(Stage.RELEASE_PREPARATION, Phase.READY_TO_RELEASE)
    alipay_like = AppSettings(app_id="gcash", grayscale_values=(10, 30, 50))

    change = _project(release(), release(grayscale=20), ready, NOW, alipay_like)

    assert change.refused
    assert change.steps == ()
    assert change.then == (
        "refused: the platform would refuse set grayscale 20%: 20% is not an allowed grayscale "
        "value on gcash (allowed: 10,30,50,100)"
    )
    assert change.phase_after == "ReadyToRelease"


def test_the_same_step_under_every_grayscale_value_is_projected_to_grayscale() -> None:
    ready = status(Stage.RELEASE_PREPARATION, Phase.READY_TO_RELEASE)

    change = _project(release(), release(grayscale=20), ready, NOW, AppSettings(app_id="gcash"))

    assert not change.refused
    assert change.steps == ("set grayscale 20%",)
    assert change.phase_after == "Grayscale 20%"


def test_a_full_release_is_projected_up_to_its_qr_code() -> None:
    at_50 = status(Stage.GRAYSCALE, Phase.GRAYSCALE, grayscale=50)

    change = _project(
        release(grayscale=50), release(grayscale=100), at_50, NOW, AppSettings(app_id="gcash")
    )

    assert change.steps == ("full release", "create qr code")
    assert change.phase_after == "Released"


def test_target_app_rules_come_from_relctl_yaml() -> None:
    config = RepoConfig(
        target_apps={
            "gcash": TargetApp(id="gcash", name="GCash", testers_max=5, grayscale_values=(10, 30)),
            "dana": TargetApp(id="dana", name="DANA"),
        }
    )

    gcash, dana = _target_app(config, "gcash"), _target_app(config, "dana")

    assert (gcash.testers_max, gcash.grayscale_values) == (5, (10, 30))
    assert dana.grayscale_values == () and dana.allows_grayscale(37)
