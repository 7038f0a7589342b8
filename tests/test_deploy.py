"""The deployment files: Kubernetes manifests valid against the Kubernetes schemas
(kubernetes-validate), and the image, the manifests and the docs all run the same
``relctl run``, configured only with options that command really has."""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from controller.cli import run

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
KUBERNETES = "1.30"


def documents() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_are_valid_kubernetes_objects(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_kubernetes_validate_rejects_a_broken_manifest() -> None:
    deployment = next(d for d in documents() if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_deployment_runs_two_replicas_with_probes_secret_and_scrape_annotations() -> None:
    docs = {d["kind"]: d for d in documents()}
    assert {"Deployment", "Secret", "ConfigMap"} <= set(docs)
    deployment = docs["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    container = pod["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "command" not in container and "args" not in container  # the image's `relctl run`
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    secret = docs["Secret"]["stringData"]
    assert {"RELCTL_WEBHOOK_SECRET", "RELCTL_NOTIFY_SMTP_PASSWORD", "id_ed25519"} <= set(secret)
    # two replicas need the lease, and relctl run accepts this one
    data = docs["ConfigMap"]["data"]
    assert float(data["RELCTL_LEASE_DURATION"]) >= 2 * float(data["RELCTL_INTERVAL"]) > 0


def run_envvars() -> set[str]:
    return {
        name
        for param in run.params
        for name in ([param.envvar] if isinstance(param.envvar, str) else param.envvar or [])
    }


def test_every_setting_in_the_configmap_is_read_by_relctl_run() -> None:
    config = next(d for d in documents() if d["kind"] == "ConfigMap")
    unknown = set(config["data"]) - run_envvars()
    assert not unknown, f"relctl run reads no {sorted(unknown)}"


def test_the_image_entrypoint_is_the_documented_relctl_run() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    entrypoint = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, re.MULTILINE)
    assert entrypoint is not None
    assert json.loads(entrypoint.group(1)) == ["relctl", "run"]
    assert re.search(r"^USER\s+(?!0\b|root\b)\S+", dockerfile, re.MULTILINE), "runs as root"
    assert "openssh-client" in dockerfile and " git " in dockerfile
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert 'ENTRYPOINT ["relctl", "run"]' in docs
    exec_start = re.search(r"^ExecStart=(\S+) run(\s|$)", docs, re.MULTILINE)
    assert exec_start is not None and exec_start.group(1).endswith("relctl")
