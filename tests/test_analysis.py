"""Metric providers against real servers: a tiny http.server for ``web`` and for the exporter
a real Prometheus (Debian's ``prometheus``) scrapes, on 127.0.0.1; the simulator for
``platform``. No data, errors and NaN come back without a value (Inconclusive)."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from controller_world import make_world, manifest
from sysdeps import require_program

from controller.analysis import json_path, measure
from controller.model import Metric, Provider, Status
from controller.platform.sim import Simulator
from controller.rollout import judge

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[Callable[[int, bytes], str]]:
    """Serve one answer (status, body) at every path; the base URL."""
    answer: list[tuple[int, bytes]] = [(200, b"{}")]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answer[0]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def serve(status: int, body: bytes) -> str:
        answer[0] = (status, body)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield serve
    httpd.shutdown()
    httpd.server_close()


def web(url: str, path: str) -> Metric:
    return Metric("errors", Provider.WEB, url, "result < 2", json_path=path)


def test_web_reads_a_number_at_a_json_path(server: Callable[[int, bytes], str]) -> None:
    url = server(200, json.dumps({"data": {"series": [{"value": 1.25}]}}).encode())
    (found,) = measure(None, "rel", [web(url + "/m", "$.data.series[0].value")], NOW)  # type: ignore[arg-type]
    assert found.value == 1.25 and found.error == ""


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (503, b"{}", "HTTP 503"),
        (200, b'{"data": {}}', "is not in the response"),
        (200, b'{"data": {"series": [{"value": null}]}}', "not a number"),
        (200, b"not json", "no data"),
    ],
)
def test_web_without_a_number_is_no_data(
    server: Callable[[int, bytes], str], status: int, body: bytes, words: str
) -> None:
    url = server(status, body)
    metric = web(url, "$.data.series[0].value")
    (found,) = measure(None, "rel", [metric], NOW)  # type: ignore[arg-type]
    assert found.value is None and words in found.error
    assert judge(metric, found).result.value == "Inconclusive"


def test_json_path_walks_keys_and_indexes() -> None:
    assert json_path({"a": [{"b": 3}]}, "$.a[0].b") == 3


def test_platform_reads_the_simulator_feedback(tmp_path: Path) -> None:
    simulator = Simulator(tmp_path / "platform.db")
    try:
        simulator.set_app("gcash", pilot_required=False, review="auto", review_after=0)
        simulator.upload("shop", "1.0.0")
        snapshot = simulator.create_release(
            "shop", "1.0.0", "gcash", "production", idempotency_key="k1"
        )
        simulator.set_metrics(snapshot.release_id, crash_rate=2.5, error_rate=0.5)
        metrics = [
            Metric("crash", Provider.PLATFORM, "crashRate", "result < 1"),
            Metric("errors", Provider.PLATFORM, "errorRate", "result < 1"),
            Metric("bogus", Provider.PLATFORM, "latency", "result < 1"),
        ]
        crash, errors, bogus = measure(simulator, snapshot.release_id, metrics, NOW)
    finally:
        simulator.close()
    assert (crash.value, errors.value, crash.sample) == (2.5, 0.5, 0)
    assert bogus.value is None and "unknown platform metric" in bogus.error


# --------------------------------------------------------------------------------------------
# a real Prometheus scraping a tiny exporter
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Prometheus for the module (it takes seconds to start and scrape)."""
    binary = require_program("prometheus", "prometheus")
    tmp_path = tmp_path_factory.mktemp("prometheus")

    class Exporter(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'# TYPE shop_crash_rate gauge\nshop_crash_rate{app="gcash"} 0.75\n'
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    exporter = ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: shop\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.server_address[1]}']}}]\n"
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                url = f"{address}/api/v1/query?query=shop_crash_rate"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if json.load(response)["data"]["result"]:
                        break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("Prometheus did not scrape the exporter within 60 s")
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)
        exporter.shutdown()
        exporter.server_close()


def test_prometheus_instant_query(prometheus: str) -> None:
    metrics = [
        Metric("crash", Provider.PROMETHEUS, 'shop_crash_rate{app="gcash"}', "result < 1",
               address=prometheus),
        Metric("none", Provider.PROMETHEUS, 'shop_crash_rate{app="dana"}', "result < 1",
               address=prometheus),
        Metric("scalar", Provider.PROMETHEUS, "scalar(shop_crash_rate) * 2", "result < 1",
               address=prometheus),
        Metric("bad", Provider.PROMETHEUS, "shop_crash_rate{", "result < 1", address=prometheus),
    ]  # fmt: skip
    crash, none, scalar, bad = measure(None, "rel", metrics, NOW)  # type: ignore[arg-type]
    assert crash.value == 0.75
    assert none.value is None and "no series" in none.error
    assert scalar.value == 1.5
    assert bad.value is None and bad.error
    assert judge(metrics[0], crash).result.value == "Successful"


def test_prometheus_address_comes_from_the_environment(prometheus: str) -> None:
    metric = Metric("crash", Provider.PROMETHEUS, "shop_crash_rate", "result < 1")
    (found,) = measure(None, "rel", [metric], NOW, environ={"RELCTL_PROMETHEUS_URL": prometheus})  # type: ignore[arg-type]
    assert found.value == 0.75
    (missing,) = measure(None, "rel", [metric], NOW, environ={})  # type: ignore[arg-type]
    assert missing.value is None and "RELCTL_PROMETHEUS_URL" in missing.error


# --------------------------------------------------------------------------------------------
# through the controller: real git, the simulator, a real metrics server
# --------------------------------------------------------------------------------------------

E2E_CONFIG = """\
apiVersion: relctl/v1
kind: Config
targetApps:
  gcash: {{name: GCash, environment: production, testersMax: 50}}
analysisTemplates:
  external:
    metrics:
      - name: external
        provider: {provider}
        query: '{query}'
        {extra}
        successCondition: result < 1
"""


def rollout_through_controller(tmp_path: Path, config: str) -> Status:
    document = yaml.safe_load(manifest(complete=True))
    del document["spec"]["grayscale"]
    document["spec"]["rollout"] = {
        "steps": [{"grayscale": 10}, {"analysis": {"template": "external"}}, {"grayscale": 50}]
    }
    with make_world(tmp_path, {"relctl.yaml": config}, pilot_apps=()) as w:
        w.edit("releases/shop/gcash.yaml", yaml.safe_dump(document, sort_keys=False))
        w.run_until(lambda s: "shop/gcash" in s and s["shop/gcash"].grayscale == 10)
        w.pass_once()
        w.pass_once()
        return w.statuses()["shop/gcash"]


def test_a_web_metric_gates_a_rollout(tmp_path: Path, server: Callable[[int, bytes], str]) -> None:
    url = server(200, json.dumps({"errors": 0.25}).encode())
    config = E2E_CONFIG.format(provider="web", query=url, extra="jsonPath: $.errors")
    status = rollout_through_controller(tmp_path, config)
    assert status.grayscale == 50
    assert status.rollout is not None
    assert [(r.value, r.result.value) for r in status.rollout.runs] == [(0.25, "Successful")]


def test_a_prometheus_metric_halts_a_rollout(tmp_path: Path, prometheus: str) -> None:
    config = E2E_CONFIG.format(
        provider="prometheus", query="shop_crash_rate * 2", extra=f"address: {prometheus}"
    )
    status = rollout_through_controller(tmp_path, config)
    assert status.grayscale == 10
    assert status.rollout is not None and status.rollout.halt == "AnalysisFailed"
    assert "external = 1.5 (not result < 1)" in status.rollout.message
