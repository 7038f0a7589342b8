"""The HTTP contract of the adapter protocol, shared by the client and the server.

One job: say, as data, how each ``Platform`` call and each typed error travels over HTTP
(``schemas/platform-openapi.yaml`` is the published form of the same facts; a test checks
that they agree). Nothing here sends or serves anything.

* Every mutation is ``POST`` with the header ``Idempotency-Key`` (required): the same key with
  the same call replays the first answer, the same key with another call is a ``Conflict``.
* Every error is the envelope ``{"error": {"code", "message", "retry_after"?}}``; the ``code``
  is the name of the error type of ``controller.platform.errors`` (the HTTP status is a hint
  for proxies and people, the code is what a client acts on).
* ``GET /v1/releases`` pages with ``limit`` and an opaque ``cursor`` (``next_cursor`` in the
  answer, null on the last page).
* ``GET /v1/release-changes`` is ``list_releases``: ``since`` (an opaque cursor, absent for
  "from the start") and ``limit`` (1..``LIST_RELEASES_MAX``) in the query; the answer is
  ``{"releases", "cursor", "more"}``, and the caller follows ``more`` with ``cursor``. A cursor
  the platform did not hand out is ``404 NotFound``.

Callers: ``controller.platform.http.client`` and ``controller.platform.http.server``.
"""

from __future__ import annotations

from typing import Any

from controller.platform.errors import (
    ERROR_TYPES,
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
    "API_PREFIX",
    "BAD_REQUEST",
    "IDEMPOTENCY_HEADER",
    "LIST_CHANGES_PATH",
    "MAX_CURSOR",
    "MAX_PAGE",
    "STATUS_BY_CODE",
    "TOKEN_ENV",
    "UNAUTHORIZED",
    "envelope",
    "error_from_envelope",
]

API_PREFIX = "/v1"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: The bearer token both sides read from the environment (never from a file or an argument).
TOKEN_ENV = "RELCTL_PLATFORM_TOKEN"
#: Largest ``limit`` of ``GET /v1/releases``; also its default.
MAX_PAGE = 100
#: The path of ``list_releases`` (under ``API_PREFIX``); its largest ``limit`` is
#: ``controller.platform.protocol.LIST_RELEASES_MAX``, also its default.
LIST_CHANGES_PATH = "/release-changes"
#: Longest ``since`` the server accepts (a longer one is a client bug: 400).
MAX_CURSOR = 512

#: Codes of the envelope that are not errors of the adapter protocol: the request itself was
#: wrong (a client bug) or carried no valid token (the adapter's configuration).
BAD_REQUEST = "InvalidRequest"
UNAUTHORIZED = "Unauthorized"

STATUS_BY_CODE: dict[str, int] = {
    InvalidState.code: 409,
    Conflict.code: 409,
    NotEditable.code: 409,
    NotFound.code: 404,
    LimitExceeded.code: 409,
    RateLimited.code: 429,
    Transient.code: 503,
    Unknown.code: 502,
    PlatformUnusable.code: 500,
    PlatformError.code: 500,
    BAD_REQUEST: 400,
    UNAUTHORIZED: 401,
}
"""HTTP status per envelope code. Every refusal of a well-formed request is 409 (400 is only
for requests that break the contract). ``Unknown`` is 502 (a gateway could not tell whether the
upstream call happened); ``Transient`` 503 (nothing happened, try again)."""


def envelope(error: PlatformError) -> dict[str, Any]:
    """The JSON body of a typed error."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if isinstance(error, RateLimited):
        body["retry_after"] = error.retry_after
    return {"error": body}


def error_from_envelope(data: Any) -> PlatformError | None:
    """The typed error an envelope names, or None when ``data`` is not an envelope.

    A code this client does not know becomes the base ``PlatformError`` (permanent): a newer
    server may have more codes, and an unknown refusal must not be retried blindly.
    """
    if not isinstance(data, dict) or not isinstance(data.get("error"), dict):
        return None
    body = data["error"]
    code, message = body.get("code"), body.get("message")
    if not isinstance(code, str) or not isinstance(message, str):
        return None
    if code == RateLimited.code:
        retry_after = body.get("retry_after", 1.0)
        seconds = float(retry_after) if isinstance(retry_after, int | float) else 1.0
        return RateLimited(message, retry_after=max(seconds, 0.0))
    error_type = ERROR_TYPES.get(code, PlatformError)
    return error_type(message if error_type is not PlatformError else f"{code}: {message}")
