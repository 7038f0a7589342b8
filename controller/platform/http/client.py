"""The HTTP adapter: the ``Platform`` protocol spoken over the HTTP contract with httpx.

``--platform http://HOST:PORT`` (or ``https://...``, optionally with a path prefix) opens an
:class:`HttpPlatform`; the bearer token comes from ``RELCTL_PLATFORM_TOKEN`` and is never
printed. Any server that implements ``schemas/platform-openapi.yaml`` can be driven this way:
``relctl platform serve`` (the simulator), a partner platform, an in-house gateway.

What crosses the wire and what comes back:

* the envelope's ``code`` becomes the typed error of the same name (``contract``);
* a failure before the request left (connection refused, connect timeout) is ``Transient``;
  after it left (read timeout, dropped connection), a mutation is ``Unknown`` and a read
  ``Transient``; a proxy's 502/504 without an envelope likewise;
* ``401``/``403`` is ``PlatformUnusable`` (the token or the URL is wrong: a person must act).

Bounded retries inside one call: ``Transient``, ``Unknown`` (mutations carry their
``Idempotency-Key``, so a repeat replays the first answer) and ``RateLimited`` when its
``Retry-After`` is short (at most ``max_retry_after``); then the error goes to the caller,
whose retry policy (``controller.act``) takes over. ``sleep`` is injectable (tests).

Callers: :func:`controller.platform.open_platform` and tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from controller.platform.errors import (
    NotFound,
    PlatformError,
    PlatformUnusable,
    RateLimited,
    Transient,
    Unknown,
    retry_briefly,
)
from controller.platform.http.contract import (
    API_PREFIX,
    IDEMPOTENCY_HEADER,
    LIST_CHANGES_PATH,
    MAX_CURSOR,
    TOKEN_ENV,
    error_from_envelope,
)
from controller.platform.protocol import (
    LIST_RELEASES_MAX,
    Feedback,
    QrCode,
    ReleaseChanges,
    ReleaseSnapshot,
    TesterChange,
    VersionInfo,
)
from controller.platform.sim import codec

__all__ = ["HttpPlatform"]

#: Connect quickly or not at all; a platform call may take a while to answer.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _retry_after(response: httpx.Response, default: float = 1.0) -> float:
    """``Retry-After`` in seconds: a number, or an HTTP date."""
    value = response.headers.get("retry-after")
    if value is None:
        return default
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(when.timestamp() - time.time(), 0.0)


class HttpPlatform:
    """A ``Platform`` over HTTP; thread-safe (one pooled httpx client)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 2,
        max_retry_after: float = 5.0,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int | None = None,
    ) -> None:
        """``token`` defaults to ``$RELCTL_PLATFORM_TOKEN``; without one: PlatformUnusable.

        ``page_size`` is the ``limit`` of list calls (None: the server's default).
        """
        token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        if not token:
            raise PlatformUnusable(
                f"the HTTP platform {base_url} needs a bearer token: set {TOKEN_ENV}"
            )
        self.base_url = base_url.rstrip("/")
        self._retries = max(retries, 0)
        self._max_retry_after = max_retry_after
        self._backoff = backoff
        self._sleep = sleep
        self._page_size = page_size
        self._client = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"HttpPlatform({self.base_url!r})"  # never the token

    # --- the wire -------------------------------------------------------------------------
    def _once(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
        key: str | None = None,
    ) -> Any:  # fmt: skip
        mutation = key is not None
        headers = {IDEMPOTENCY_HEADER: key} if key is not None else {}
        where = f"{method} {path}"
        try:
            response = self._client.request(method, path, json=body, params=params, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise Transient(f"{where}: cannot reach {self.base_url}: {error}") from None
        except httpx.TransportError as error:
            text = f"{where}: {type(error).__name__} after sending: {error}"
            if mutation:
                raise Unknown(text + "; re-query before retrying") from None
            raise Transient(text) from None
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                if mutation:
                    raise Unknown(f"{where}: the answer is not JSON; re-query") from None
                raise Transient(f"{where}: the answer is not JSON") from None
        try:
            data = response.json()
        except ValueError:
            data = None
        typed = error_from_envelope(data)
        status = response.status_code
        if status in (401, 403):
            raise PlatformUnusable(
                f"{self.base_url} refused the bearer token (HTTP {status}): check {TOKEN_ENV}"
            )
        if isinstance(typed, RateLimited):
            typed.retry_after = max(typed.retry_after, _retry_after(response, 0.0))
        if typed is not None:
            raise typed
        if status == 429:
            raise RateLimited(f"{where}: HTTP 429", retry_after=_retry_after(response))
        if status in (502, 504) and mutation:
            raise Unknown(f"{where}: HTTP {status} from a gateway; re-query before retrying")
        if status in (502, 503, 504):
            raise Transient(f"{where}: HTTP {status}")
        raise PlatformError(f"{where}: HTTP {status} without an error envelope")

    def _call(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
        key: str | None = None,
    ) -> Any:  # fmt: skip
        # Unknown too: the Idempotency-Key makes the server replay instead of acting twice
        return retry_briefly(
            lambda: self._once(method, path, body=body, params=params, key=key),
            retry_on=(Transient, Unknown, RateLimited),
            retries=self._retries,
            backoff=self._backoff,
            max_retry_after=self._max_retry_after,
            sleep=self._sleep,
        )

    def _mutate(self, path: str, key: str, body: Any = None) -> Any:
        return self._call("POST", path, body=body if body is not None else {}, key=key)

    # --- observation ----------------------------------------------------------------------
    def get_version(self, mini_program: str, version: str) -> VersionInfo | None:
        try:
            path = f"/mini-programs/{_seg(mini_program)}/versions/{_seg(version)}"
            data = self._call("GET", path)
        except NotFound:
            return None
        return codec.version_from_dict(data)

    def get_release(self, release_id: str) -> ReleaseSnapshot:
        return codec.snapshot_from_dict(self._call("GET", f"/releases/{_seg(release_id)}"))

    def find_releases(self, mini_program: str, target_app: str) -> list[ReleaseSnapshot]:
        found: list[ReleaseSnapshot] = []
        params = {"mini_program": mini_program, "target_app": target_app}
        if self._page_size is not None:
            params["limit"] = str(self._page_size)
        while True:
            page = self._call("GET", "/releases", params=params)
            found.extend(codec.snapshot_from_dict(item) for item in page["items"])
            if page.get("next_cursor") is None:
                return found
            params = {**params, "cursor": str(page["next_cursor"])}

    def list_releases(self, since: str | None = None, *, limit: int = 1000) -> ReleaseChanges:
        """One page of ``GET /release-changes`` (``ListsReleases``); the caller follows ``more``.

        A ``limit`` above ``LIST_RELEASES_MAX`` is sent as that; below 1 is a ValueError, as
        in-process. A cursor the server did not hand out raises NotFound.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer of at least 1 (got {limit!r})")
        params = {"limit": str(min(limit, LIST_RELEASES_MAX))}
        if since is not None:
            if len(since) > MAX_CURSOR:  # the server never hands out one this long
                raise NotFound(
                    f"cursor of {len(since)} characters is not a list_releases cursor of "
                    f"{self.base_url}: list from the start (since=None)"
                )
            params["since"] = since
        data = self._call("GET", LIST_CHANGES_PATH, params=params)
        return ReleaseChanges(
            releases=tuple(codec.snapshot_from_dict(item) for item in data["releases"]),
            cursor=str(data["cursor"]),
            more=bool(data["more"]),
        )

    def get_feedback(self, release_id: str) -> Feedback:
        data = self._call("GET", f"/releases/{_seg(release_id)}/feedback")
        return codec.feedback_from_dict(data)

    # --- mutations ------------------------------------------------------------------------
    def create_release(
        self,
        mini_program: str,
        version: str,
        target_app: str,
        environment: str,
        *,
        idempotency_key: str,
    ) -> ReleaseSnapshot:
        body = {"mini_program": mini_program, "version": version, "target_app": target_app,
                "environment": environment}  # fmt: skip
        return codec.snapshot_from_dict(self._mutate("/releases", idempotency_key, body))

    def _release(self, release_id: str, action: str, key: str, body: Any = None) -> Any:
        return self._mutate(f"/releases/{_seg(release_id)}/{action}", key, body)

    def _snapshot(
        self, release_id: str, action: str, key: str, body: Any = None
    ) -> ReleaseSnapshot:
        return codec.snapshot_from_dict(self._release(release_id, action, key, body))

    def update_basic_info(
        self, release_id: str, basic_info: Mapping[str, str], *, idempotency_key: str
    ) -> ReleaseSnapshot:
        body = {"basic_info": {str(k): str(v) for k, v in basic_info.items()}}
        return self._snapshot(release_id, "basic-info", idempotency_key, body)

    def update_configuration(
        self, release_id: str, configuration: Mapping[str, Any], *, idempotency_key: str
    ) -> ReleaseSnapshot:
        body = {"configuration": codec.plain(configuration)}
        return self._snapshot(release_id, "configuration", idempotency_key, body)

    def run_compatibility_test(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        return self._snapshot(release_id, "compatibility-test", idempotency_key)

    def apply(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        return self._snapshot(release_id, "apply", idempotency_key)

    def withdraw(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        return self._snapshot(release_id, "withdraw", idempotency_key)

    def set_testers(
        self, release_id: str, testers: Sequence[str], *, idempotency_key: str
    ) -> TesterChange:
        body = {"testers": [str(t) for t in testers]}
        data = self._release(release_id, "testers", idempotency_key, body)
        return codec.tester_change_from_dict(data)

    def complete_testing(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        return self._snapshot(release_id, "complete-testing", idempotency_key)

    def cancel(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        return self._snapshot(release_id, "cancel", idempotency_key)

    def set_grayscale(
        self, release_id: str, percent: int, *, idempotency_key: str
    ) -> ReleaseSnapshot:
        return self._snapshot(release_id, "grayscale", idempotency_key, {"percent": int(percent)})

    def full_release(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        return self._snapshot(release_id, "full-release", idempotency_key)

    def create_qr_code(self, release_id: str, *, idempotency_key: str) -> QrCode:
        return codec.qr_from_dict(self._release(release_id, "qr-code", idempotency_key))
