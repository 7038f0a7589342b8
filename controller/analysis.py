"""Take the measurements of a rollout's analysis step: the only I/O of metric gates.

``measure(platform, release_id, metrics, now)`` asks each metric's provider once and returns a
``Measurement`` per metric; ``controller.rollout`` judges them purely. A provider that fails,
times out or has no data gives a measurement with no value and the reason in ``error``:
Inconclusive, never zero and never a success.

Providers:

* ``platform``: the adapter's ``get_feedback`` (``crashRate``, ``errorRate``,
  ``usersOnVersion``; the sample size is the users on the version).
* ``prometheus``: an instant query, ``GET <address>/api/v1/query?query=...``; the first
  sample of a vector, or a scalar. ``address`` defaults to ``$RELCTL_PROMETHEUS_URL``; a bearer
  token comes from ``$RELCTL_PROMETHEUS_TOKEN``.
* ``web``: ``GET <query>`` and a JSONPath (``$.a.b[0]``) into the JSON body; a bearer token
  comes from ``$RELCTL_WEB_TOKEN``.

Credentials come from the environment, never from the repository. Called by
``controller.reconcile`` before ``decide``.
"""

from __future__ import annotations

import json
import math
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from controller.model import Measurement, Metric, Provider
from controller.platform.errors import PlatformError
from controller.platform.protocol import Feedback, Platform

__all__ = ["PLATFORM_QUERIES", "json_path", "measure"]

#: What a ``platform`` metric may ask for.
PLATFORM_QUERIES = ("crashRate", "errorRate", "usersOnVersion")
#: A response body larger than this is not read.
MAX_BODY = 1 << 20
TIMEOUT = 5.0

_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[([0-9]+)\]")


class _NoValue(Exception):
    """The provider answered without a usable number."""


def measure(
    platform: Platform,
    release_id: str,
    metrics: Iterable[Metric],
    now: datetime,
    *,
    environ: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> tuple[Measurement, ...]:
    """One measurement per metric (never raises for a provider's sake)."""
    env = os.environ if environ is None else environ
    feedback: Feedback | None = None
    found: list[Measurement] = []
    for metric in metrics:
        sample: int | None = None
        try:
            if metric.provider is Provider.PLATFORM:
                if feedback is None:
                    feedback = platform.get_feedback(release_id)
                value, sample = _platform(metric.query, feedback), feedback.users_on_version
            elif metric.provider is Provider.PROMETHEUS:
                value = _prometheus(metric, env, timeout)
            else:
                value = _web(metric, env, timeout)
        except (PlatformError, _NoValue, OSError, ValueError) as error:
            detail = str(error) or type(error).__name__
            found.append(Measurement(metric.name, now, None, sample, f"no data ({detail})"))
            continue
        found.append(Measurement(metric.name, now, value, sample))
    return tuple(found)


def _platform(query: str, feedback: Feedback) -> float:
    if query == "crashRate":
        return feedback.crash_rate
    if query == "errorRate":
        return feedback.error_rate
    if query == "usersOnVersion":
        return float(feedback.users_on_version)
    raise _NoValue(f"unknown platform metric {query!r}: one of {', '.join(PLATFORM_QUERIES)}")


def _get_json(url: str, token: str | None, timeout: float) -> Any:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise _NoValue(f"not an http(s) URL: {url[:80]}")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_BODY + 1)
    except urllib.error.HTTPError as error:
        raise _NoValue(f"HTTP {error.code}") from None
    except urllib.error.URLError as error:
        raise _NoValue(str(error.reason)) from None
    if len(body) > MAX_BODY:
        raise _NoValue(f"response larger than {MAX_BODY:,} bytes")
    return json.loads(body)


def _prometheus(metric: Metric, env: Mapping[str, str], timeout: float) -> float:
    address = metric.address or env.get("RELCTL_PROMETHEUS_URL")
    if not address:
        raise _NoValue("no Prometheus address (address or RELCTL_PROMETHEUS_URL)")
    url = f"{address.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': metric.query})}"
    answer = _get_json(url, env.get("RELCTL_PROMETHEUS_TOKEN"), timeout)
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise _NoValue(f"Prometheus error: {str(answer.get('error', answer))[:120]}")
    data = answer.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        return _number(result[1])
    if data.get("resultType") == "vector" and isinstance(result, list):
        if not result:
            raise _NoValue("the query returned no series")
        return _number(result[0]["value"][1])
    raise _NoValue(f"unsupported result type {data.get('resultType')!r}")


def _web(metric: Metric, env: Mapping[str, str], timeout: float) -> float:
    body = _get_json(metric.query, env.get("RELCTL_WEB_TOKEN"), timeout)
    return _number(json_path(body, metric.json_path or "$"))


def json_path(document: Any, path: str) -> Any:
    """The value at a simple JSONPath (``$``, ``.key``, ``[index]``). Raises _NoValue."""
    if not path.startswith("$"):
        raise _NoValue(f"a JSONPath starts with $: {path!r}")
    rest = path[1:]
    value = document
    position = 0
    while position < len(rest):
        match = _STEP.match(rest, position)
        if match is None:
            raise _NoValue(f"unsupported JSONPath {path!r}")
        key, index = match.groups()
        try:
            value = value[key] if key is not None else value[int(index)]
        except (KeyError, IndexError, TypeError):
            raise _NoValue(f"{path} is not in the response") from None
        position = match.end()
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise _NoValue(f"not a number: {value!r}")
    number = float(value)  # Prometheus sends numbers as strings ("NaN" included)
    if math.isnan(number) or math.isinf(number):
        raise _NoValue(f"{value} is not a measurement")
    return number
