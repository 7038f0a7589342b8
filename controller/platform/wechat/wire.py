"""The WeChat API on the wire: access token, timeouts, bounded retries, errcode -> typed error.

:class:`WeChatWire` is the one door of relctl's WeChat adapter to ``api.weixin.qq.com`` (or the
simulator's WeChat gateway): it keeps the mini program's secret (never in a message, a log line,
``repr`` or a URL: the token comes from ``cgi-bin/stable_token``, the secret in the body), caches
the access token until ``REFRESH_MARGIN`` seconds before it expires and refreshes it once when a
call answers 40001/40014/42001. It types what happened:

* before sending (connection refused, connect timeout): ``Transient``; after sending, a mutation
  is ``Unknown`` and a read ``Transient``; HTTP 502/504 likewise, other 5xx ``Transient``;
* ``errcode`` by one table, :data:`ERRORS`; -1 (system busy) is ``Unknown`` on a mutation and
  ``Transient`` on a read; 87013 is ``LimitExceeded`` with the quota's hint.

:meth:`WeChatWire.call` retries what did not happen (``Transient``, ``RateLimited`` of at most
``max_retry_after`` seconds) at most ``retries`` times; :meth:`WeChatWire.mutate` never repeats
an ``Unknown`` mutation blindly: it asks the caller's re-query first (WeChat has no idempotency
keys).

WeChat puts the access token in every URL's query; httpx logs request URLs at INFO, so importing
this module adds a filter to the ``httpx`` logger that masks ``access_token=`` values.

Callers: :class:`controller.platform.wechat.adapter.WeChatPlatform` only.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx

from controller.platform.errors import (
    InvalidState,
    LimitExceeded,
    NotFound,
    PlatformError,
    PlatformUnusable,
    RateLimited,
    Transient,
    Unknown,
    retry_briefly,
)

__all__ = [
    "APP_ID_ENV",
    "APP_SECRET_ENV",
    "BEIJING",
    "DEFAULT_BASE_URL",
    "ERRORS",
    "WeChatWire",
    "cut",
]

APP_ID_ENV = "RELCTL_WECHAT_APP_ID"
APP_SECRET_ENV = "RELCTL_WECHAT_APP_SECRET"
DEFAULT_BASE_URL = "https://api.weixin.qq.com"
#: Largest answer read (a QR code image included); a larger one is not read at all.
MAX_ANSWER = 4 * 1024 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
#: The cached access token is renewed this many seconds before WeChat says it expires.
REFRESH_MARGIN = 300.0
#: WeChat's daily quotas reset at midnight Beijing time.
BEIJING = timezone(timedelta(hours=8), "UTC+8")

#: errcodes that mean the access token is not (or no longer) good: refresh once.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
#: errcodes of the token call itself: the app id or secret is wrong, or the IP not allowed.
CREDENTIAL_ERRCODES = frozenset({40002, 40013, 40125, 40164, 41002, 41004})


def _quota_hint(errmsg: str, at: float) -> str:
    now = datetime.fromtimestamp(at, BEIJING)
    reset = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (
        "WeChat's undocodeaudit quota is used up (87013): withdrawals of an audit are limited "
        "per account per day and month; it resets at 00:00 Beijing time "
        f"({reset.astimezone(UTC):%Y-%m-%d %H:%M} UTC). Let the review finish (or be "
        "rejected) and change the manifest afterwards, or wait for the reset; WeChat said: "
        f"{errmsg}"
    )


#: WeChat errcode -> (relctl error type, what it means). Codes not listed are a permanent
#: ``PlatformError`` carrying WeChat's own words. -1, the token codes and 87013 are special
#: (see :meth:`WeChatWire._raise`).
ERRORS: dict[int, tuple[type[PlatformError], str]] = {
    45009: (RateLimited, "daily API call limit reached"),
    45011: (RateLimited, "API call frequency limit"),
    85002: (LimitExceeded, "the trial version's tester limit is reached"),
    85019: (NotFound, "no version in progress"),
    85020: (InvalidState, "the status of the version does not allow this"),
    85009: (InvalidState, "a version is already under audit"),
    87011: (InvalidState, "a gray release is in progress: cannot roll back"),
    87012: (InvalidState, "this version cannot be rolled back"),
    87013: (LimitExceeded, "the undocodeaudit quota is used up"),
    40097: (PlatformError, "invalid arguments"),
    47001: (PlatformError, "malformed request body"),
    85021: (PlatformError, "ext_json is not valid"),
}

_ACCESS_TOKEN = re.compile(r"(access_token=)[^&\s\"']+")


class _RedactTokens(logging.Filter):
    """httpx logs request URLs at INFO; WeChat puts the access token in the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                _ACCESS_TOKEN.sub(r"\1***", str(a)) if "access_token=" in str(a) else a
                for a in (record.args if isinstance(record.args, tuple) else (record.args,))
            )
        return True


_HTTPX_LOG = logging.getLogger("httpx")
if not any(isinstance(f, _RedactTokens) for f in _HTTPX_LOG.filters):
    _HTTPX_LOG.addFilter(_RedactTokens())


def cut(value: Any, limit: int = 200) -> str:
    """``value`` as text of at most ``limit`` characters (WeChat's answers are untrusted)."""
    text = str(value) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def checked_base_url(url: str) -> str:
    """``url`` without a trailing slash if it is https (or http to this machine, for a local
    gateway); else ValueError: the app secret and access tokens never cross a network in
    clear text."""
    parts = urlsplit(url.strip())
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if (parts.scheme == "https" and parts.hostname) or (parts.scheme == "http" and local):
        return url.strip().rstrip("/")
    raise ValueError(
        f"wechat: the base URL must be https://HOST (http only to this machine): {url!r}"
    )


class WeChatWire:
    """One mini program's authenticated connection to WeChat's API (one pooled httpx client)."""

    def __init__(
        self,
        base_url: str,
        *,
        app_id: str,
        app_secret: str,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 2,
        max_retry_after: float = 5.0,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = checked_base_url(base_url)
        self.app_id = app_id
        self.__secret = app_secret
        self._retries = max(retries, 0)
        self._max_retry_after = max_retry_after
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._token: tuple[str, float] | None = None
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout, follow_redirects=False,
            headers={"Accept": "application/json"},
        )  # fmt: skip
        #: Requests sent, by path (tests and reports count them).
        self.calls: dict[str, int] = {}

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"WeChatWire({self.base_url!r}, app_id={self.app_id!r})"  # never the secret

    def _access_token(self, *, force: bool = False) -> str:
        if not force and self._token is not None and self._clock() < self._token[1]:
            return self._token[0]
        body = {"grant_type": "client_credential", "appid": self.app_id,
                "secret": self.__secret, "force_refresh": force}  # fmt: skip
        data = self._send("POST", "/cgi-bin/stable_token", body=body, mutation=False)
        assert isinstance(data, dict)
        errcode = data.get("errcode", 0)
        if errcode in CREDENTIAL_ERRCODES:
            raise PlatformUnusable(
                f"WeChat refused the app id or secret (errcode {errcode}): check {APP_ID_ENV} and "
                f"{APP_SECRET_ENV} (and the API IP allowlist)"
            )
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if errcode or not isinstance(token, str) or not token:
            self._raise(int(errcode) if isinstance(errcode, int) else 0, data, "stable_token",
                        mutation=False)  # fmt: skip
        seconds = float(expires_in) if isinstance(expires_in, int | float) else 7200.0
        self._token = (str(token), self._clock() + max(seconds - REFRESH_MARGIN, 0.0))
        return str(token)

    def _send(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
        mutation: bool, image: bool = False,
    ) -> dict[str, Any] | tuple[bytes, str]:  # fmt: skip
        """One HTTP exchange; transport failures and non-200 answers typed, errcode untouched."""
        where = f"WeChat {path.rsplit('/', 1)[-1]}"
        self.calls[path] = self.calls.get(path, 0) + 1
        try:
            response, content = self._exchange(method, path, body, params)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            name = type(error).__name__
            raise Transient(f"{where}: cannot reach {self.base_url}: {name}") from None
        except httpx.TransportError as error:
            text = f"{where}: {type(error).__name__} after sending"
            if mutation:
                raise Unknown(text + "; re-query before retrying") from None
            raise Transient(text) from None
        if response.status_code == 429:
            raise RateLimited(f"{where}: HTTP 429", retry_after=1.0)
        if response.status_code != 200:
            text = f"{where}: HTTP {response.status_code}"
            if mutation and response.status_code in (502, 504):
                raise Unknown(text + " from a gateway; re-query before retrying")
            if response.status_code >= 500:
                raise Transient(text)
            raise PlatformError(text)
        if content is None:
            text = f"{where}: the answer is larger than {MAX_ANSWER} bytes; not read"
            if mutation:
                raise Unknown(text + " (re-query before retrying)")
            raise Transient(text)
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if image and media.startswith("image/"):
            return content, media
        try:
            data = json.loads(content)
        except ValueError:
            if mutation:
                raise Unknown(f"{where}: the answer is not JSON; re-query") from None
            raise Transient(f"{where}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise PlatformError(f"{where}: the answer is not a JSON object")
        return data

    def _exchange(
        self, method: str, path: str, body: Any, params: Mapping[str, str] | None
    ) -> tuple[httpx.Response, bytes | None]:
        """The response and its body, read up to :data:`MAX_ANSWER` bytes (None past it):
        WeChat's answers are untrusted input, and a body is never read whole before its size
        is known."""
        request = self._client.build_request(method, path, json=body, params=params)
        response = self._client.send(request, stream=True)
        try:
            content = bytearray()
            for chunk in response.iter_bytes():
                content += chunk
                if len(content) > MAX_ANSWER:
                    return response, None
            return response, bytes(content)
        finally:
            response.close()

    def _raise(self, errcode: int, data: Mapping[str, Any], name: str, *, mutation: bool) -> None:
        errmsg = cut(data.get("errmsg"))
        where = f"WeChat {name}"
        if errcode == -1:
            if mutation:
                raise Unknown(f"{where}: system busy (errcode -1); re-query before retrying")
            raise Transient(f"{where}: system busy (errcode -1)")
        if errcode == 87013:
            raise LimitExceeded(f"{where}: {_quota_hint(errmsg, self._clock())}")
        if errcode in TOKEN_ERRCODES:
            raise PlatformUnusable(
                f"{where}: WeChat refused a fresh access token (errcode {errcode}): check "
                f"{APP_ID_ENV} and {APP_SECRET_ENV}"
            )
        kind, meaning = ERRORS.get(errcode, (PlatformError, "refused"))
        message = f"{where}: {meaning} (errcode {errcode}: {errmsg})"
        if kind is RateLimited:
            daily = errcode == 45009
            raise RateLimited(message, retry_after=3600.0 if daily else 1.0)
        raise kind(message)

    def _once(self, method: str, name: str, body: Any, params: Mapping[str, str] | None,
              *, mutation: bool, image: bool, ok: frozenset[int]) -> Any:  # fmt: skip
        for attempt in (0, 1):
            query = {**(params or {}), "access_token": self._access_token(force=attempt == 1)}
            answer = self._send(method, f"/wxa/{name}", body=body, params=query,
                                mutation=mutation, image=image)  # fmt: skip
            if isinstance(answer, tuple):
                return answer
            errcode = answer.get("errcode", 0)
            if not isinstance(errcode, int):
                shown = cut(errcode, 20)
                raise PlatformError(f"WeChat {name}: errcode {shown!r} is not a number")
            if errcode in TOKEN_ERRCODES and attempt == 0:
                continue  # the token expired or was revoked: one refresh, then once more
            if errcode == 0 or errcode in ok:
                return answer
            self._raise(errcode, answer, name, mutation=mutation)
        raise AssertionError("unreachable")  # pragma: no cover

    def call(self, method: str, name: str, body: Any = None,
              params: Mapping[str, str] | None = None, *, mutation: bool = False,
              image: bool = False, ok: frozenset[int] = frozenset()) -> Any:  # fmt: skip
        """A call with bounded retries of what did not happen (Transient, short RateLimited)."""
        # never Unknown: WeChat has no idempotency keys (mutate re-queries instead)
        return retry_briefly(
            lambda: self._once(method, name, body, params, mutation=mutation, image=image, ok=ok),
            retry_on=(Transient, RateLimited),
            retries=self._retries,
            backoff=self._backoff,
            max_retry_after=self._max_retry_after,
            sleep=self._sleep,
        )

    def mutate(self, name: str, body: Any, done: Callable[[], bool],
                ok: frozenset[int] = frozenset()) -> Any:  # fmt: skip
        """A mutation: after ``Unknown``, re-query (``done``) and repeat only if it did not
        take effect (WeChat has no idempotency keys)."""
        attempt = 0
        while True:
            try:
                return self.call("POST", name, body, mutation=True, ok=ok)
            except Unknown as unknown:
                try:
                    took_effect = done()
                except PlatformError as error:  # the outcome stays unknown, never "Transient"
                    raise Unknown(f"{unknown.message}; the re-query failed too: {error}") from None
                if took_effect:
                    return {}
                if attempt >= self._retries:
                    raise
                attempt += 1
                self._sleep(self._backoff * (2**attempt))
