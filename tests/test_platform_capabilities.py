"""Capabilities per platform: a manifest that asks a platform for what it cannot do fails at
pull-request time (``relctl validate``, and ``check``/``plan`` through the same loading), with
the platform named. Real files in a temporary repository; no platform is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from controller.cli import cli
from controller.manifests import load_repository
from controller.platform import SCHEMES
from controller.platform.capabilities import CAPABILITIES, capabilities_for


def config(platform: str, apps: dict[str, dict[str, object]]) -> str:
    document = {
        "apiVersion": "relctl/v1",
        "kind": "Config",
        "platform": platform,
        "targetApps": {app: {"name": app.upper(), **spec} for app, spec in apps.items()},
    }
    return yaml.safe_dump(document, sort_keys=False)  # fmt: skip


def release(app: str = "alipay", *, grayscale: int = 0, min_pass_rate: int = 0,
            testers: int = 1) -> str:  # fmt: skip
    document = {
        "apiVersion": "relctl/v1",
        "kind": "Release",
        "metadata": {"miniProgram": "shop", "targetApp": app},
        "spec": {
            "version": "1.4.0",
            "compatibility": {"minPassRate": min_pass_rate},
            "pilot": {"testers": [f"20880000000000{n:02d}" for n in range(testers)]},
            "grayscale": grayscale,
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


def repo(tmp_path: Path, relctl_yaml: str, **manifests: str) -> Path:
    (tmp_path / "relctl.yaml").write_text(relctl_yaml)
    for app, text in manifests.items():
        path = tmp_path / "releases" / "shop" / f"{app}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def codes(root: Path) -> dict[str, str]:
    return {p.code: p.message for p in load_repository(root).problems}


def test_every_adapter_scheme_declares_its_capabilities() -> None:
    assert set(SCHEMES) <= set(CAPABILITIES)
    assert capabilities_for(None) == CAPABILITIES["sim"]
    assert capabilities_for("alipay:app") is CAPABILITIES["alipay"]


def test_a_grayscale_step_alipay_does_not_offer_is_refused_naming_alipay(tmp_path: Path) -> None:
    root = repo(tmp_path, config("alipay:", {"alipay": {}}), alipay=release(grayscale=20))
    found = codes(root)
    assert "grayscale-value" in found
    assert "Alipay Open Platform" in found["grayscale-value"]


@pytest.mark.parametrize("percent", [0, 10, 30, 50, 100])
def test_alipay_gray_strategies_and_full_release_are_accepted(tmp_path: Path, percent: int) -> None:
    root = repo(tmp_path, config("alipay:", {"alipay": {}}), alipay=release(grayscale=percent))
    assert codes(root) == {}


def test_the_same_step_is_fine_on_the_simulator(tmp_path: Path) -> None:
    root = repo(tmp_path, config("sim:p.db", {"alipay": {}}), alipay=release(grayscale=20))
    assert codes(root) == {}


def test_a_target_app_cannot_declare_steps_or_a_tester_limit_beyond_the_platform(
    tmp_path: Path,
) -> None:
    apps = {"alipay": {"grayscaleValues": [10, 20], "testersMax": 80}}
    found = codes(repo(tmp_path, config("alipay:", apps)))
    assert "20" in found["platform-grayscale"] and "Alipay" in found["platform-grayscale"]
    assert "at most 50" in found["platform-tester-limit"]


def test_a_pass_rate_gate_is_refused_where_the_platform_runs_no_compatibility_tests(
    tmp_path: Path,
) -> None:
    root = repo(tmp_path, config("wechat:", {"alipay": {}}), alipay=release(min_pass_rate=95))
    assert "WeChat" in codes(root)["platform-compatibility"]


def test_the_platform_tester_limit_applies_when_the_app_declares_none(tmp_path: Path) -> None:
    root = repo(tmp_path, config("alipay:", {"alipay": {}}), alipay=release(testers=51))
    assert "at most 50" in codes(root)["tester-limit"]


def test_relctl_validate_fails_with_the_platform_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = repo(tmp_path, config("alipay:", {"alipay": {}}), alipay=release(grayscale=20))
    monkeypatch.chdir(root)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert "Alipay Open Platform" in result.output


def test_a_configuration_is_refused_where_the_platform_keeps_none(tmp_path: Path) -> None:
    document = yaml.safe_load(release())
    document["spec"]["configuration"] = {"theme": "dark"}
    root = repo(tmp_path, config("alipay:", {"alipay": {}}), alipay=yaml.safe_dump(document))
    found = codes(root)
    assert "Alipay Open Platform" in found["platform-configuration"]
    (tmp_path / "w").mkdir()
    wechat = repo(
        tmp_path / "w", config("wechat:", {"alipay": {}}), alipay=yaml.safe_dump(document)
    )
    assert "platform-configuration" not in codes(wechat), "WeChat carries it as ext_json"


ANALYSES = {
    "on-platform": {"metrics": [{"name": "crash-rate", "provider": "platform",
                                 "query": "crashRate", "successCondition": "result < 1.5"}]},
    "on-prometheus": {"metrics": [{"name": "errors", "provider": "prometheus",
                                   "query": "sum(rate(errors[5m]))",
                                   "address": "http://127.0.0.1:9090",
                                   "successCondition": "result < 1"}]},
}  # fmt: skip


@pytest.mark.parametrize(
    ("platform", "template", "refused"),
    [
        ("wechat:", "on-platform", True),
        ("alipay:", "on-platform", True),
        ("wechat:", "on-prometheus", False),
        ("sim:x.db", "on-platform", False),
    ],
)
def test_an_analysis_of_platform_metrics_is_refused_where_the_platform_reports_none(
    tmp_path: Path, platform: str, template: str, refused: bool
) -> None:
    relctl = yaml.safe_load(config(platform, {"alipay": {}}))
    relctl["analysisTemplates"] = ANALYSES
    document = yaml.safe_load(release())
    del document["spec"]["grayscale"]
    document["spec"]["pilot"]["complete"] = True
    document["spec"]["rollout"] = {
        "steps": [{"grayscale": 10}, {"analysis": {"template": template}}, {"grayscale": 100}]
    }
    root = repo(tmp_path, yaml.safe_dump(relctl), alipay=yaml.safe_dump(document))
    found = load_repository(root).problems
    metrics = [p for p in found if p.code == "platform-metrics"]
    assert bool(metrics) is refused, [p.to_dict() for p in found]
    if refused:
        assert metrics[0].path == "spec.rollout.steps[1].analysis"
        assert "crash-rate" in metrics[0].message
