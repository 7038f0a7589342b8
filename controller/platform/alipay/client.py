"""relctl's signed client of the Alipay Open Platform gateway (``POST gateway.do``), over httpx.

One job: one API call, both ways trusted. A request is signed RSA2 with the app's private key
(common parameters and the signature in the query, ``biz_content`` and the API's own text
parameters in the form body, as ``alipay-sdk-python`` sends them); every answer's signature is
checked with Alipay's public key over the exact bytes of its ``..._response`` object, and an
answer that does not verify is never read: ``PlatformUnusable`` (a wrong key, or something
between relctl and Alipay that rewrites answers: a person must look).

Results by one table (:func:`error_for`), Alipay's S/F/U reading:

* S: ``code`` 10000, the result object is returned;
* U: ``code`` 20000 (service unavailable) on a mutation is ``Unknown`` (the call may have
  happened), on a read ``Transient``; with a busy/limit ``sub_code`` it is ``RateLimited``;
* F: ``code`` 40004 by ``sub_code`` (:data:`SUB_CODE_ERRORS`; unknown sub codes are
  ``InvalidState``, the safe reading of a refusal); 20001, 40002 ``isv.invalid-signature`` /
  ``isv.invalid-app-id``, 40003 and 40006 are ``PlatformUnusable`` (keys or app id wrong).

Transport failures are typed like ``controller.platform.http.client``: nothing sent
(connection refused, connect or pool timeout) is ``Transient``; after sending (read timeout,
dropped connection, a proxy's 502/504) a mutation is ``Unknown``, a read ``Transient``.
Bounded retries inside one call only for what certainly did not happen (``Transient``, and
``RateLimited`` with a short wait); ``Unknown`` goes back to the adapter, which re-queries
before it repeats anything (Alipay has no idempotency keys).

Credentials come from the environment (:func:`credentials_from_env`); the private key is never
in a message, a log line or ``repr``.

Callers: ``controller.platform.alipay.adapter`` and tests.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from controller.platform.alipay import wire
from controller.platform.alipay.wire import BEIJING, TIME_FORMAT
from controller.platform.errors import (
    Conflict,
    InvalidState,
    LimitExceeded,
    NotEditable,
    NotFound,
    PlatformError,
    PlatformUnusable,
    RateLimited,
    Transient,
    Unknown,
)

__all__ = [
    "APP_ID_ENV",
    "APP_PRIVATE_KEY_ENV",
    "DEFAULT_GATEWAY",
    "GATEWAY_URL_ENV",
    "PUBLIC_KEY_ENV",
    "SUB_CODE_ERRORS",
    "AlipayClient",
    "Credentials",
    "check_gateway_url",
    "credentials_from_env",
    "error_for",
]

#: The environment relctl's Alipay adapter reads (keys as the Alipay console shows them).
APP_ID_ENV = "RELCTL_ALIPAY_APP_ID"
APP_PRIVATE_KEY_ENV = "RELCTL_ALIPAY_APP_PRIVATE_KEY"
PUBLIC_KEY_ENV = "RELCTL_ALIPAY_PUBLIC_KEY"
GATEWAY_URL_ENV = "RELCTL_ALIPAY_GATEWAY_URL"

DEFAULT_GATEWAY = "https://openapi.alipay.com/gateway.do"

#: Connect quickly or not at all; a platform call may take a while to answer.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

#: A rate limit: nothing happened, try again later (Alipay gives no Retry-After).
RATE_LIMIT_SUB_CODES = frozenset(
    {"aop.ACQ.SYSTEM_BUSY", "isp.rate-limit", "aop.app-call-limited", "isv.app-call-limited"}
)

#: 40004 ``sub_code`` -> the permanent error it means (Alipay's words go in the message).
SUB_CODE_ERRORS: dict[str, type[PlatformError]] = {
    "isv.invalid-state": InvalidState,
    "isv.not-found": NotFound,
    "isv.conflict": Conflict,
    "isv.limit-exceeded": LimitExceeded,
    "isv.not-editable": NotEditable,
    "isv.invalid-gray-strategy": LimitExceeded,
}

#: Codes that mean the adapter's configuration is wrong (keys, app id, permissions).
UNUSABLE_CODES = frozenset({"20001", "40003", "40006"})
UNUSABLE_SUB_CODES = frozenset(
    {"isv.invalid-signature", "isv.invalid-app-id", "isv.invalid-signature-type"}
)

#: The largest answer read (a version list is a few KiB; more is a gateway gone wrong).
MAX_ANSWER = 4 * 1024 * 1024

_MAX_WORDS = 200  # Alipay's words quoted in a message are cut (they are untrusted input)


def _words(text: Any) -> str:
    value = " ".join(str(text).split())
    return value if len(value) <= _MAX_WORDS else value[: _MAX_WORDS - 3] + "..."


def error_for(method: str, result: Mapping[str, Any], *, mutation: bool) -> PlatformError:
    """The typed error of a result that is not a success (``code`` != 10000)."""
    code = str(result.get("code", ""))
    sub_code = str(result.get("sub_code", ""))
    said = _words(result.get("sub_msg") or result.get("msg") or "")
    where = f"{method}: {code} {sub_code}".rstrip() + (f": {said}" if said else "")
    if code == "20000":
        if sub_code in RATE_LIMIT_SUB_CODES:
            return RateLimited(f"{where}; retry later")
        if mutation:
            return Unknown(f"{where} (result status U); re-query before retrying")
        return Transient(where)
    if code in UNUSABLE_CODES or sub_code in UNUSABLE_SUB_CODES:
        return PlatformUnusable(
            f"{where}: check {APP_ID_ENV}, {APP_PRIVATE_KEY_ENV} and {PUBLIC_KEY_ENV}"
        )
    if code == "40004":
        return SUB_CODE_ERRORS.get(sub_code, InvalidState)(where)
    if code == "40002" and sub_code in SUB_CODE_ERRORS:
        return SUB_CODE_ERRORS[sub_code](where)
    return PlatformError(where)


@dataclass(frozen=True)
class Credentials:
    """The app id and the two keys of one Alipay app (the mini program)."""

    app_id: str
    app_private_key: rsa.RSAPrivateKey = field(repr=False)
    alipay_public_key: rsa.RSAPublicKey = field(repr=False)


def credentials_from_env(environ: Mapping[str, str] | None = None) -> Credentials:
    """The app id and keys from ``RELCTL_ALIPAY_*``; PlatformUnusable naming what is missing."""
    env = os.environ if environ is None else environ
    names = (APP_ID_ENV, APP_PRIVATE_KEY_ENV, PUBLIC_KEY_ENV)
    missing = [name for name in names if not env.get(name, "").strip()]
    if missing:
        raise PlatformUnusable(f"the Alipay adapter needs {', '.join(missing)} in the environment")
    try:
        private = wire.load_private_key(env[APP_PRIVATE_KEY_ENV])
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PlatformUnusable(
            f"{APP_PRIVATE_KEY_ENV} is not an RSA private key (base64 body or PEM)"
        ) from None
    try:
        public = wire.load_public_key(env[PUBLIC_KEY_ENV])
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PlatformUnusable(
            f"{PUBLIC_KEY_ENV} is not an RSA public key (base64 body or PEM)"
        ) from None
    return Credentials(env[APP_ID_ENV].strip(), private, public)


def check_gateway_url(url: str) -> str:
    """``url`` if it is https (or http to this machine, for a local gateway); else ValueError."""
    parts = urlsplit(url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if (parts.scheme == "https" and parts.hostname) or (parts.scheme == "http" and local):
        return url
    raise ValueError(
        f"alipay: the gateway URL must be https://HOST/PATH (http only to this machine): {url!r}"
    )


def _inner_json(body: str, key: str) -> str | None:
    """The exact text of the object under ``key`` at the top level of ``body`` (signed bytes)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get(key), dict):
        return None
    decoder = json.JSONDecoder()
    marker = f'"{key}"'
    start = body.find(marker)
    while start != -1:
        colon = body.find(":", start + len(marker))
        value_at = colon + 1
        while value_at < len(body) and body[value_at] in " \t\r\n":
            value_at += 1
        try:
            value, end = decoder.raw_decode(body, value_at)
        except ValueError:
            value = None
        if value == document[key]:
            return body[value_at:end]
        start = body.find(marker, start + 1)
    return None


class AlipayClient:
    """Signed calls to one gateway for one app; thread-safe (one pooled httpx client)."""

    def __init__(
        self,
        credentials: Credentials,
        gateway_url: str = DEFAULT_GATEWAY,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 2,
        backoff: float = 0.2,
        rate_limit_wait: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.gateway_url = check_gateway_url(gateway_url)
        self._credentials = credentials
        self._retries = max(retries, 0)
        self._backoff = backoff
        self._rate_limit_wait = rate_limit_wait
        self._sleep = sleep
        self._clock = clock
        #: Requests sent (each attempt), for tests and the adapter's own accounting.
        self.sent = 0
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    @property
    def app_id(self) -> str:
        return self._credentials.app_id

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"AlipayClient({self.app_id!r}, {self.gateway_url!r})"  # never a key

    def call(
        self,
        method: str,
        biz: Mapping[str, Any] | None = None,
        *,
        mutation: bool,
        text_params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One API call with bounded retries of what certainly did not happen.

        ``biz`` goes in ``biz_content``; ``text_params`` are the API's own top-level
        parameters (``version.audit.apply`` takes its fields that way). Returns the result
        object of a success; raises the typed error of anything else.
        """
        attempt = 0
        while True:
            try:
                return self._once(method, biz, text_params or {}, mutation=mutation)
            except (Transient, RateLimited) as error:
                if attempt >= self._retries:
                    raise
                attempt += 1
                wait = error.retry_after if isinstance(error, RateLimited) else 0.0
                self._sleep(max(wait, self._backoff * (2 ** (attempt - 1))))

    def _once(
        self,
        method: str,
        biz: Mapping[str, Any] | None,
        text_params: Mapping[str, str],
        *,
        mutation: bool,
    ) -> dict[str, Any]:
        params = {
            "app_id": self.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": self._clock().astimezone(BEIJING).strftime(TIME_FORMAT),
            "version": "1.0",
        }
        form = dict(text_params)
        if biz is not None:
            form["biz_content"] = json.dumps(dict(biz), ensure_ascii=False, separators=(",", ":"))
        content = wire.sign_content({**params, **form}).encode()
        params["sign"] = wire.sign(self._credentials.app_private_key, content)
        self.sent += 1
        try:
            status, body = self._post(params, form)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise Transient(f"{method}: cannot reach {self.gateway_url}: {error}") from None
        except httpx.TransportError as error:
            text = f"{method}: {type(error).__name__} after sending"
            if mutation:
                raise Unknown(text + "; re-query before retrying") from None
            raise Transient(text) from None
        if status != 200:
            text = f"{method}: HTTP {status} from {self.gateway_url}"
            if mutation and status >= 500 and status != 503:
                raise Unknown(text + "; re-query before retrying")
            if status >= 500:
                raise Transient(text)
            raise PlatformUnusable(text + ": is the gateway URL right?")
        if body is None:
            raise PlatformUnusable(
                f"{method}: the gateway's answer is larger than {MAX_ANSWER} bytes; not read "
                "(the outcome of a change is unknown)"
            )
        return self._read(method, body.decode("utf-8", "replace"), mutation=mutation)

    def _post(self, params: Mapping[str, str], form: Mapping[str, str]) -> tuple[int, bytes | None]:
        """The status and body of one POST; the body is None past ``MAX_ANSWER`` bytes."""
        request = self._client.build_request("POST", self.gateway_url, params=params, data=form)
        response = self._client.send(request, stream=True)
        try:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER:
                    return response.status_code, None
            return response.status_code, bytes(body)
        finally:
            response.close()

    def _read(self, method: str, body: str, *, mutation: bool) -> dict[str, Any]:
        """Verify the answer's signature, then read its result by the table."""
        key = wire.response_key(method)
        inner = _inner_json(body, key)
        if inner is None:
            inner = _inner_json(body, "error_response")
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        signature = document.get("sign") if isinstance(document, dict) else None
        if inner is None or not isinstance(signature, str) or not signature:
            raise PlatformUnusable(
                f"{method}: the gateway's answer is not a signed Alipay response; not trusted "
                f"(the outcome of a change is unknown): is {self.gateway_url} Alipay's gateway?"
            )
        if not wire.verify(self._credentials.alipay_public_key, inner.encode(), signature):
            raise PlatformUnusable(
                f"{method}: the answer's signature does not verify with {PUBLIC_KEY_ENV}; not "
                "trusted (the outcome of a change is unknown): check the key, and what stands "
                "between relctl and the gateway"
            )
        result = json.loads(inner)
        if str(result.get("code")) == "10000":
            return dict(result)
        raise error_for(method, result, mutation=mutation)
