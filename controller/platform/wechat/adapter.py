"""relctl's WeChat adapter: the ``Platform`` protocol over WeChat's mini program API (httpx).

``--platform wechat:`` (or ``wechat:https://HOST[/PREFIX]``, default ``https://api.weixin.qq.com``)
opens a :class:`WeChatPlatform` for one mini program: its app id and secret come from
``RELCTL_WECHAT_APP_ID`` and ``RELCTL_WECHAT_APP_SECRET`` and are never printed (not in errors,
logs or ``repr``). The mini program *is* the app id; releases go to one target app
(``wechat``); a manifest naming another mini program or target app is refused, naming it.

The wire:

* the access token comes from ``cgi-bin/stable_token`` (the secret travels in the body, never in
  a URL), is cached until ``REFRESH_MARGIN`` seconds before it expires, and is refreshed once
  when a call answers 40001/42001; a second refusal is ``PlatformUnusable``;
* connect timeout 5 s, read timeout 30 s; failures before sending are ``Transient``, after
  sending a mutation is ``Unknown`` and a read ``Transient``;
* ``errcode`` -> typed error by one table, :data:`ERRORS`; -1 (system busy) is ``Unknown`` on a
  mutation and ``Transient`` on a read;
* bounded retries inside one call: ``Transient`` and short ``RateLimited`` up to twice; an
  ``Unknown`` mutation is never repeated blindly: WeChat has no idempotency keys, so the adapter
  re-queries and treats "already in the target state" as success, and only then repeats.

WeChat calls name no version: they act on the mini program's trial / audited / gray version.
The adapter therefore refuses an operation on a release that is not the one WeChat would act on
(the stage it derives says so), and keeps what WeChat does not hold in its ledger
(:mod:`controller.platform.wechat.ledger`; docs/platforms.md, "What WeChat does not hold").

Callers: :func:`controller.platform.open_platform` and tests.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

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
from controller.platform.protocol import (
    CompatibilityReport,
    CompatibilityStatus,
    Feedback,
    QrCode,
    ReleaseSnapshot,
    Review,
    ReviewDecision,
    Stage,
    TesterChange,
    VersionInfo,
    configuration_digest,
)
from controller.platform.wechat.ledger import DEFAULT_LEDGER, LEDGER_ENV, Ledger, Record

__all__ = [
    "APP_ID_ENV",
    "APP_SECRET_ENV",
    "DEFAULT_BASE_URL",
    "ERRORS",
    "TARGET_APP",
    "WeChatPlatform",
    "derive_stage",
]

APP_ID_ENV = "RELCTL_WECHAT_APP_ID"
APP_SECRET_ENV = "RELCTL_WECHAT_APP_SECRET"
DEFAULT_BASE_URL = "https://api.weixin.qq.com"
#: The target app name relctl's manifests use for WeChat.
TARGET_APP = "wechat"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
#: The cached access token is renewed this many seconds before WeChat says it expires.
REFRESH_MARGIN = 300.0
#: WeChat's daily quotas reset at midnight Beijing time.
BEIJING = timezone(timedelta(hours=8), "UTC+8")

#: The message of a version whose audit was withdrawn (audit status 3).
WITHDRAWN = "audit withdrawn (undocodeaudit)"
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
#: (see :meth:`WeChatPlatform._raise`).
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


@dataclass(frozen=True)
class WeChatView:
    """What WeChat says about a mini program right now (three reads)."""

    trial_version: str | None
    trial_time: float | None
    trial_desc: str
    released_version: str | None
    released_time: float | None
    #: get_latest_auditstatus: (user_version, status, reason, submit time), or None.
    audit_version: str | None
    audit_status: int | None
    audit_reason: str
    audit_time: float | None
    gray_percentage: int
    gray_time: float | None


def derive_stage(record: Record, view: WeChatView) -> tuple[Stage, int, str]:
    """The relctl stage, grayscale and message of ``record``'s version, from what WeChat says.

    Pure: WeChat's answers decide, the ledger adds only relctl's own steps (pilot testing
    completed, canceled, released once).
    """
    version = record.version
    if record.canceled_at is not None:
        return Stage.CANCELED, 0, record.cancel_reason
    if view.released_version == version:
        return Stage.FULL_RELEASE, 100, ""
    if record.released_at is not None:
        now_on = view.released_version or "nothing"
        return Stage.ARCHIVED, 0, f"WeChat now serves {now_on} (replaced or rolled back)"
    if view.audit_version == version:
        status = view.audit_status
        if status == 0 and view.gray_percentage > 0:
            return Stage.GRAYSCALE, view.gray_percentage, ""
        if status in (2, 4):
            return Stage.UNDER_REVIEW, 0, "audit delayed" if status == 4 else ""
        if status == 1:
            return Stage.REJECTED, 0, view.audit_reason
        if status == 0:
            if record.pilot_completed_at is None:
                return Stage.PILOT_TESTING, 0, "approved: the trial version is with its testers"
            return Stage.RELEASE_PREPARATION, 0, ""
        if status == 3 and view.trial_version == version:
            return Stage.NEW_VERSION_CREATED, 0, WITHDRAWN
    if view.trial_version == version:
        return Stage.NEW_VERSION_CREATED, 0, ""
    replaced = view.trial_version or "nothing"
    return Stage.CANCELED, 0, f"WeChat's trial version is now {replaced}: this one was replaced"


def _svg_of(image: bytes, media_type: str) -> str:
    """An SVG that shows ``image`` (WeChat answers a PNG or JPEG), so ``QrCode.svg`` holds it."""
    width = height = 430  # WeChat's default QR code size
    if image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) >= 24:
        width, height = struct.unpack(">II", image[16:24])
    data = base64.b64encode(image).decode("ascii")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><image width="{width}" height="{height}" '
        f'href="data:{media_type};base64,{data}"/></svg>'
    )


def _text(value: Any, limit: int = 200) -> str:
    text = str(value) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _version(value: Any) -> str | None:
    """A version WeChat names, if it is a plausible one (WeChat's answers are untrusted)."""
    if isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable():
        return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


class WeChatPlatform:
    """A ``Platform`` over WeChat's mini program API for one app id; thread-safe enough for the
    controller (one httpx client; the ledger serialises its writes)."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        app_id: str | None = None,
        app_secret: str | None = None,
        ledger: Path | None = None,
        target_app: str = TARGET_APP,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 2,
        max_retry_after: float = 5.0,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Credentials default to the environment; without them: PlatformUnusable.

        ``clock`` (epoch seconds) times the token's expiry and the ledger's stamps.
        """
        app_id = app_id if app_id is not None else os.environ.get(APP_ID_ENV, "")
        app_secret = app_secret if app_secret is not None else os.environ.get(APP_SECRET_ENV, "")
        missing = [n for n, v in ((APP_ID_ENV, app_id), (APP_SECRET_ENV, app_secret)) if not v]
        if missing:
            raise PlatformUnusable(
                f"the WeChat adapter needs the mini program's app id and secret: set "
                f"{' and '.join(missing)}"
            )
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.target_app = target_app
        self.__secret = app_secret
        self._retries = max(retries, 0)
        self._max_retry_after = max_retry_after
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._token: tuple[str, float] | None = None
        self._ledger = Ledger(ledger or Path(os.environ.get(LEDGER_ENV) or DEFAULT_LEDGER))
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout, follow_redirects=False,
            headers={"Accept": "application/json"},
        )  # fmt: skip
        #: Calls sent to WeChat, by path (tests and the bench count them).
        self.calls: dict[str, int] = {}

    def close(self) -> None:
        self._client.close()
        self._ledger.close()

    def __repr__(self) -> str:
        return f"WeChatPlatform({self.base_url!r}, app_id={self.app_id!r})"  # never the secret

    # --- the wire -------------------------------------------------------------------------
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
            response = self._client.request(method, path, json=body, params=params)
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
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if image and media.startswith("image/"):
            return response.content, media
        try:
            data = response.json()
        except ValueError:
            if mutation:
                raise Unknown(f"{where}: the answer is not JSON; re-query") from None
            raise Transient(f"{where}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise PlatformError(f"{where}: the answer is not a JSON object")
        return data

    def _raise(self, errcode: int, data: Mapping[str, Any], name: str, *, mutation: bool) -> None:
        errmsg = _text(data.get("errmsg"))
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
                shown = _text(errcode, 20)
                raise PlatformError(f"WeChat {name}: errcode {shown!r} is not a number")
            if errcode in TOKEN_ERRCODES and attempt == 0:
                continue  # the token expired or was revoked: one refresh, then once more
            if errcode == 0 or errcode in ok:
                return answer
            self._raise(errcode, answer, name, mutation=mutation)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, method: str, name: str, body: Any = None,
              params: Mapping[str, str] | None = None, *, mutation: bool = False,
              image: bool = False, ok: frozenset[int] = frozenset()) -> Any:  # fmt: skip
        """A call with bounded retries of what did not happen (Transient, short RateLimited)."""
        attempt = 0
        while True:
            try:
                return self._once(method, name, body, params, mutation=mutation, image=image,
                                  ok=ok)  # fmt: skip
            except (Transient, RateLimited) as error:
                if attempt >= self._retries:
                    raise
                if isinstance(error, RateLimited):
                    if error.retry_after > self._max_retry_after:
                        raise
                    delay = error.retry_after
                else:
                    delay = self._backoff * (2**attempt)
                attempt += 1
                self._sleep(delay)

    def _mutate(self, name: str, body: Any, done: Callable[[], bool],
                ok: frozenset[int] = frozenset()) -> Any:  # fmt: skip
        """A mutation: after ``Unknown``, re-query (``done``) and repeat only if it did not
        take effect (WeChat has no idempotency keys)."""
        attempt = 0
        while True:
            try:
                return self._call("POST", name, body, mutation=True, ok=ok)
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

    # --- observation ----------------------------------------------------------------------
    def _served(self, mini_program: str, target_app: str | None = None) -> None:
        if mini_program != self.app_id:
            raise NotFound(
                f"the WeChat adapter serves mini program {self.app_id} ({APP_ID_ENV}), not "
                f"{_text(mini_program, 80)!r}"
            )
        if target_app is not None and target_app != self.target_app:
            raise NotFound(
                f"the WeChat adapter releases to target app {self.target_app!r} only, not "
                f"{_text(target_app, 80)!r}: use targetApp: {self.target_app} for WeChat"
            )

    def _view(self) -> WeChatView:
        info = self._call("POST", "getversioninfo", {})
        exp = info.get("exp_info") if isinstance(info.get("exp_info"), dict) else {}
        rel = info.get("release_info") if isinstance(info.get("release_info"), dict) else {}
        audit = self._call("GET", "get_latest_auditstatus", ok=frozenset({85019}))
        if audit.get("errcode", 0) == 85019:
            audit = {}
        plan = self._call("GET", "getgrayreleaseplan").get("gray_release_plan")
        plan = plan if isinstance(plan, dict) else {}
        gray = plan.get("gray_percentage") if plan.get("status") == 1 else 0
        status = audit.get("status")
        return WeChatView(
            trial_version=_version(exp.get("exp_version")),
            trial_time=_number(exp.get("exp_time")),
            trial_desc=_text(exp.get("exp_desc")),
            released_version=_version(rel.get("release_version")),
            released_time=_number(rel.get("release_time")),
            audit_version=_version(audit.get("user_version")),
            audit_status=status
            if isinstance(status, int) and not isinstance(status, bool)
            else None,
            audit_reason=_text(audit.get("reason")),
            audit_time=_number(audit.get("submit_audit_time")),
            gray_percentage=gray if isinstance(gray, int) and 0 <= gray <= 100 else 0,
            gray_time=_number(plan.get("create_timestamp")),
        )

    def _release_id(self, version: str) -> str:
        return f"{self.app_id}@{version}"

    def _version_of(self, release_id: str) -> str:
        appid, sep, version = release_id.rpartition("@")
        if not sep or appid != self.app_id or not version:
            raise NotFound(f"no WeChat release {_text(release_id, 80)!r} of {self.app_id}")
        return version

    def _records(self, view: WeChatView) -> list[tuple[Record, bool]]:
        """The ledger's records plus versions WeChat shows that the ledger does not know."""
        known = self._ledger.records(self.app_id)
        on_wechat = {view.trial_version, view.released_version, view.audit_version}
        for record in known:
            if not record.committed and record.version in on_wechat:
                record.committed = True  # the commit answered Unknown but took effect
                self._ledger.put(self.app_id, record)
        found = [(r, True) for r in known if r.committed]
        names = {r.version for r in known}
        for version, at in ((view.released_version, view.released_time),
                            (view.trial_version, view.trial_time)):  # fmt: skip
            if version and version not in names:
                names.add(version)
                stamp = at or self._clock()
                found.append((Record(version, "production", stamp, stamp), False))
        return sorted(found, key=lambda pair: (pair[0].created_at, pair[0].version))

    def _snapshot(self, record: Record, view: WeChatView, known: bool) -> ReleaseSnapshot:
        stage, grayscale, message = derive_stage(record, view)
        if known:
            self._stamp(record, stage, view)
        else:
            message = (
                f"{record.version} was committed outside relctl: the adapter has no record of "
                "its configuration, basic info or testers" + (f"; {message}" if message else "")
            )
        times = {Stage(k): datetime.fromtimestamp(v, UTC) for k, v in record.stage_times.items()}
        times.setdefault(stage, datetime.fromtimestamp(record.updated_at, UTC))
        review: Review | None = None
        if view.audit_version == record.version and view.audit_status in (0, 1):
            approved = view.audit_status == 0
            first_seen = (Stage.PILOT_TESTING if approved else Stage.REJECTED).value
            decided = record.stage_times.get(first_seen, record.updated_at)
            review = Review(
                ReviewDecision.APPROVED if approved else ReviewDecision.REJECTED,
                view.audit_reason, True, datetime.fromtimestamp(decided, UTC),
            )  # fmt: skip
        report = None
        if record.report is not None:
            at = datetime.fromtimestamp(float(record.report["at"]), UTC)
            report = CompatibilityReport(
                str(record.report["id"]), CompatibilityStatus.FINISHED, 0.0, (),
                str(record.report["digest"]), at, at,
            )  # fmt: skip
        basic_info = dict(record.basic_info)
        if not known and view.trial_version == record.version and view.trial_desc:
            basic_info = {"description": view.trial_desc}
        qr = QrCode(**record.qr_code) if record.qr_code else None
        updated = max([record.updated_at, *record.stage_times.values()])
        return ReleaseSnapshot(
            release_id=self._release_id(record.version), mini_program=self.app_id,
            version=record.version, target_app=self.target_app,
            environment=record.environment, stage=stage, basic_info=basic_info,
            configuration=dict(record.configuration), compatibility=report, review=review,
            testers=tuple(sorted(record.testers)), grayscale=grayscale, stage_times=times,
            qr_code=qr, created_at=datetime.fromtimestamp(record.created_at, UTC),
            updated_at=datetime.fromtimestamp(updated, UTC), message=message,
            extra={"ledger": known},
        )  # fmt: skip

    def _stamp(self, record: Record, stage: Stage, view: WeChatView) -> None:
        """Note when a stage was first seen (WeChat's own time where it gives one)."""
        if stage.value in record.stage_times:
            return
        wechat_time = {
            Stage.UNDER_REVIEW: view.audit_time,
            Stage.GRAYSCALE: view.gray_time,
            Stage.FULL_RELEASE: view.released_time,
        }.get(stage)
        record.stage_times[stage.value] = wechat_time or self._clock()
        if stage is Stage.FULL_RELEASE and record.released_at is None:
            record.released_at = record.stage_times[stage.value]
        self._ledger.put(self.app_id, record)

    def _current(self, version: str) -> tuple[Record | None, ReleaseSnapshot]:
        view = self._view()
        for record, known in self._records(view):
            if record.version == version:
                return (record if known else None), self._snapshot(record, view, known)
        raise NotFound(f"no WeChat release of {self.app_id} {_text(version, 40)}")

    def _known(self, release_id: str) -> tuple[Record, ReleaseSnapshot]:
        record, snapshot = self._current(self._version_of(release_id))
        if record is None:
            raise InvalidState(
                f"{snapshot.version} of {self.app_id} was committed outside relctl; relctl acts "
                "only on versions it committed (commit a new version through relctl)"
            )
        return record, snapshot

    def get_version(self, mini_program: str, version: str) -> VersionInfo | None:
        self._served(mini_program)
        record = self._ledger.get(self.app_id, version)
        if record is not None:
            created = datetime.fromtimestamp(record.created_at, UTC)
            return VersionInfo(mini_program, version, created)
        for template in self._templates():
            if template.get("user_version") == version:
                at = _number(template.get("create_time")) or 0.0
                return VersionInfo(mini_program, version, datetime.fromtimestamp(at, UTC))
        return None

    def _templates(self) -> list[dict[str, Any]]:
        found = self._call("GET", "gettemplatelist").get("template_list")
        return [t for t in found if isinstance(t, dict)] if isinstance(found, list) else []

    def get_release(self, release_id: str) -> ReleaseSnapshot:
        return self._current(self._version_of(release_id))[1]

    def find_releases(self, mini_program: str, target_app: str) -> list[ReleaseSnapshot]:
        self._served(mini_program, target_app)
        view = self._view()
        return [self._snapshot(r, view, known) for r, known in self._records(view)]

    def get_feedback(self, release_id: str) -> Feedback:
        self._version_of(release_id)
        raise NotFound(
            "relctl's WeChat adapter reads no feedback metrics (WeChat's datacube APIs are not "
            "mapped): a rollout with metric gates cannot run on wechat:"
        )

    # --- mutations ------------------------------------------------------------------------
    def _require(self, snapshot: ReleaseSnapshot, stages: set[Stage], what: str,
                 error: type[PlatformError] = InvalidState) -> None:  # fmt: skip
        if snapshot.stage not in stages:
            allowed = ", ".join(sorted(s.value for s in stages))
            raise error(
                f"cannot {what} {snapshot.version} on WeChat in stage {snapshot.stage.value} "
                f"(only in {allowed})"
            )

    def _commit(self, record: Record) -> None:
        """(Re-)commit ``record``'s version: WeChat's trial version becomes exactly it."""
        ext: dict[str, Any] = {"extAppid": self.app_id}
        if record.configuration:
            ext["ext"] = record.configuration
        body = {"template_id": record.template_id or 0, "user_version": record.version,
                "user_desc": record.basic_info.get("description", ""),
                "ext_json": json.dumps(ext, sort_keys=True, separators=(",", ":"))}  # fmt: skip

        def done() -> bool:
            # a commit is a replacement: repeating it is harmless, so only a trial version of
            # another version means it did not happen
            return False

        self._mutate("commit", body, done)

    def create_release(
        self,
        mini_program: str,
        version: str,
        target_app: str,
        environment: str,
        *,
        idempotency_key: str,
    ) -> ReleaseSnapshot:
        self._served(mini_program, target_app)
        existing = self._ledger.get(self.app_id, version)
        if existing is not None and existing.committed:  # a repeat, or a new attempt
            snapshot = self._snapshot(existing, self._view(), True)
            if snapshot.stage is not Stage.CANCELED:
                return snapshot
            raise Conflict(
                f"{version} of {self.app_id} was canceled on WeChat by relctl; a "
                "canceled version is never released again: release a new version"
            )
        template = next((t for t in self._templates() if t.get("user_version") == version), None)
        if template is None:
            raise NotFound(f"{version} of {self.app_id} is not in WeChat's template list "
                           "(upload it first)")  # fmt: skip
        template_id = template.get("template_id")
        now = self._clock()
        record = Record(
            version,
            environment,
            now,
            now,
            template_id=template_id if isinstance(template_id, int) else None,
            committed=False,
        )
        self._ledger.put(self.app_id, record)  # the intent first: an Unknown commit is found
        self._commit(record)
        record.committed = True
        self._ledger.put(self.app_id, record)
        return self._current(version)[1]

    def update_basic_info(
        self, release_id: str, basic_info: Mapping[str, str], *, idempotency_key: str
    ) -> ReleaseSnapshot:
        record, snapshot = self._known(release_id)
        editable = {Stage.NEW_VERSION_CREATED, Stage.UNDER_REVIEW, Stage.REJECTED,
                    Stage.PILOT_TESTING, Stage.RELEASE_PREPARATION, Stage.GRAYSCALE}  # fmt: skip
        self._require(snapshot, editable, "change the basic info of", NotEditable)
        wanted = {str(k): str(v) for k, v in basic_info.items()}
        recommit = snapshot.stage in (Stage.NEW_VERSION_CREATED, Stage.REJECTED) and wanted.get(
            "description", ""
        ) != record.basic_info.get("description", "")
        record.basic_info, record.updated_at = wanted, self._clock()
        if recommit:  # the version description WeChat shows is the commit's user_desc
            self._commit(record)
        self._ledger.put(self.app_id, record)
        return self._current(record.version)[1]

    def update_configuration(
        self, release_id: str, configuration: Mapping[str, Any], *, idempotency_key: str
    ) -> ReleaseSnapshot:
        record, snapshot = self._known(release_id)
        self._require(snapshot, {Stage.NEW_VERSION_CREATED, Stage.REJECTED},
                      "change the configuration (ext_json) of", NotEditable)  # fmt: skip
        record.configuration = json.loads(json.dumps(dict(configuration), default=str))
        record.updated_at = self._clock()
        self._commit(record)
        self._ledger.put(self.app_id, record)
        return self._current(record.version)[1]

    def run_compatibility_test(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        record, snapshot = self._known(release_id)
        self._require(snapshot, {Stage.NEW_VERSION_CREATED, Stage.REJECTED},
                      "record a compatibility report for")  # fmt: skip
        number = self._ledger.next_number("report")
        record.report = {"id": f"WXC-{number:06d}", "at": self._clock(),
                         "digest": configuration_digest(record.configuration)}  # fmt: skip
        self._ledger.put(self.app_id, record)
        return self._current(record.version)[1]

    def apply(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        record, snapshot = self._known(release_id)
        if snapshot.stage is Stage.UNDER_REVIEW:
            return snapshot  # already in the target state
        self._require(snapshot, {Stage.NEW_VERSION_CREATED, Stage.REJECTED}, "submit the audit of")
        version = record.version

        def done() -> bool:
            view = self._view()
            return view.audit_version == version and view.audit_status in (2, 4)

        self._mutate("submit_audit", {"item_list": []}, done)
        return self._current(version)[1]

    def withdraw(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        record, snapshot = self._known(release_id)
        if snapshot.stage is Stage.NEW_VERSION_CREATED and snapshot.message == WITHDRAWN:
            return snapshot  # already withdrawn: a repeat after Unknown
        self._require(snapshot, {Stage.UNDER_REVIEW}, "withdraw the audit of")
        self._undo_audit(record.version)
        return self._current(record.version)[1]

    def _undo_audit(self, version: str) -> None:
        def done() -> bool:
            view = self._view()
            return view.audit_version == version and view.audit_status == 3

        self._mutate("undocodeaudit", None, done)

    def set_testers(
        self, release_id: str, testers: Sequence[str], *, idempotency_key: str
    ) -> TesterChange:
        record, snapshot = self._known(release_id)
        self._require(snapshot, {Stage.PILOT_TESTING}, "bind testers to")
        wanted = sorted({str(t) for t in testers})
        added = [t for t in wanted if t not in record.testers]
        removed = sorted(t for t in record.testers if t not in wanted)
        for wechatid in added:  # 85004: already a tester, so a repeat after Unknown is safe
            self._mutate("bind_tester", {"wechatid": wechatid}, lambda: False, frozenset({85004}))
            record.testers = sorted({*record.testers, wechatid})
            self._ledger.put(self.app_id, record)
        for wechatid in removed:
            self._mutate("unbind_tester", {"wechatid": wechatid}, lambda: False)
            record.testers = [t for t in record.testers if t != wechatid]
            self._ledger.put(self.app_id, record)
        return TesterChange(tuple(added), tuple(removed))

    def complete_testing(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        record, snapshot = self._known(release_id)
        if snapshot.stage is Stage.RELEASE_PREPARATION and record.pilot_completed_at is not None:
            return snapshot
        self._require(snapshot, {Stage.PILOT_TESTING}, "complete pilot testing of")
        record.pilot_completed_at = record.updated_at = self._clock()
        self._ledger.put(self.app_id, record)
        return self._current(record.version)[1]

    def cancel(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        record, snapshot = self._known(release_id)
        if snapshot.stage is Stage.CANCELED:
            return snapshot
        self._require(snapshot, {Stage.NEW_VERSION_CREATED, Stage.UNDER_REVIEW, Stage.REJECTED,
                                 Stage.PILOT_TESTING, Stage.RELEASE_PREPARATION, Stage.GRAYSCALE},
                      "cancel")  # fmt: skip
        version = record.version
        if snapshot.stage is Stage.UNDER_REVIEW:
            self._undo_audit(version)
            reason = "canceled by relctl: audit withdrawn (undocodeaudit)"
        elif snapshot.stage is Stage.GRAYSCALE:

            def reverted() -> bool:
                return self._view().gray_percentage == 0

            self._mutate("revertgrayrelease", None, reverted)
            reason = "canceled by relctl: gray release reverted (revertgrayrelease)"
        else:
            reason = (f"canceled by relctl in {snapshot.stage.value}: WeChat has no cancel step; "
                      "relctl will not release this version")  # fmt: skip
        record.canceled_at = record.updated_at = self._clock()
        record.cancel_reason = reason
        self._ledger.put(self.app_id, record)
        return self._current(version)[1]

    def set_grayscale(
        self, release_id: str, percent: int, *, idempotency_key: str
    ) -> ReleaseSnapshot:
        record, snapshot = self._known(release_id)
        if snapshot.stage is Stage.GRAYSCALE and snapshot.grayscale == percent:
            return snapshot
        self._require(snapshot, {Stage.RELEASE_PREPARATION, Stage.GRAYSCALE}, "gray-release")
        if not 1 <= percent <= 100:
            raise InvalidState(f"WeChat's gray_percentage is 1..100, not {percent}")
        if snapshot.stage is Stage.GRAYSCALE and percent < snapshot.grayscale:
            raise InvalidState(
                f"grayscale only rises: {snapshot.version} is at {snapshot.grayscale}% on WeChat"
            )

        def reached() -> bool:
            return self._view().gray_percentage >= percent

        self._mutate("grayrelease", {"gray_percentage": int(percent)}, reached)
        return self._current(record.version)[1]

    def full_release(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        record, snapshot = self._known(release_id)
        if snapshot.stage is Stage.FULL_RELEASE:
            return snapshot
        self._require(snapshot, {Stage.RELEASE_PREPARATION, Stage.GRAYSCALE}, "release")
        version = record.version

        def released() -> bool:
            return self._view().released_version == version

        self._mutate("release", {}, released)
        return self._current(version)[1]

    def create_qr_code(self, release_id: str, *, idempotency_key: str) -> QrCode:
        record, snapshot = self._known(release_id)
        if record.qr_code is not None:
            return QrCode(**record.qr_code)
        self._require(snapshot, {Stage.GRAYSCALE, Stage.FULL_RELEASE}, "fetch the QR code of")
        answer = self._call("GET", "get_qrcode", image=True)
        if not isinstance(answer, tuple):
            raise PlatformError("WeChat get_qrcode answered JSON without an image")
        image, media = answer
        qr = QrCode(url=f"{self.base_url}/wxa/get_qrcode", svg=_svg_of(image, media))
        record.qr_code = {"url": qr.url, "svg": qr.svg}
        self._ledger.put(self.app_id, record)
        return qr
