"""relctl's Alipay Open Platform adapter: the ``Platform`` protocol over Alipay's release API.

``--platform alipay:`` (or ``alipay:https://HOST/gateway.do``; else ``$RELCTL_ALIPAY_GATEWAY_URL``,
else Alipay's own gateway) opens an :class:`AlipayPlatform` for the app of
``$RELCTL_ALIPAY_APP_ID``, with the app's private key (``$RELCTL_ALIPAY_APP_PRIVATE_KEY``) and
Alipay's public key (``$RELCTL_ALIPAY_PUBLIC_KEY``); calls go through
:class:`~controller.platform.alipay.client.AlipayClient` (RSA2 both ways, typed errors).

What relctl's protocol names, and where it lives on Alipay:

* the mini program is the Alipay app (its app id); a release is one ``app_version`` of it, and
  its id is ``APPID@VERSION``; the one target app is ``alipay`` (``$RELCTL_ALIPAY_TARGET_APP``
  renames it). A call for another mini program or target app is refused by name (``NotFound``);
* the stage is read, never remembered: ``version.detail.query`` (``status``), then
  ``version.build.query`` for an ``INIT`` version (building, build failed, created) and
  ``experience.query`` for a ``WAIT_RELEASE`` one (an experience version = pilot testing);
  testers are the app's experiencers (``app.members.query``, role ``EXPERIENCER``);
* basic info is the app's base info (``app_name``, ``app_slogan``, ``app_desc``; changed by
  ``mini.baseinfo.modify``, sent as ``version_desc`` with the application): the platform is
  its truth;
* what Alipay's release API does not hold is not kept anywhere else, so nothing can disagree
  with the platform (and a second controller, or a restarted one, sees the same): the package
  configuration is part of the uploaded package on Alipay, so ``configuration`` is always
  empty and pushing one is refused (``NotEditable``) with the reason; Alipay runs no
  compatibility test, so every release carries a ``FINISHED`` report without cases
  (capabilities force ``minPassRate: 0``) and ``run_compatibility_test`` runs nothing; feedback
  metrics are not in the release API (``get_feedback`` refuses: use a Prometheus metric);
  a released version's QR code is its launch link (``alipays://platformapi/startapp?appId=``),
  known without asking; ``create_qr_code`` asks ``app.qrcode.create`` for Alipay's own.

Idempotency: Alipay has no idempotency keys, so the keys the controller passes are not sent.
Instead every change is made safe by reading the platform: a call that answered ``Unknown``
(20000, or a timeout after sending) is never repeated before the release is read again, and
a release already in the state a call asks for is a success (the call is not sent, or its
refusal is read as "already done"). That is exactly what a replayed key gives on the
simulator: one effect, whatever the number of attempts.

Callers: :func:`controller.platform.open_platform` (``alipay:``) and tests.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import urlencode

from controller.platform.alipay import wire
from controller.platform.alipay.client import (
    DEFAULT_GATEWAY,
    GATEWAY_URL_ENV,
    AlipayClient,
    credentials_from_env,
)
from controller.platform.capabilities import CAPABILITIES
from controller.platform.errors import (
    InvalidState,
    LimitExceeded,
    NotEditable,
    NotFound,
    PlatformError,
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
    TesterChange,
    VersionInfo,
    configuration_digest,
)
from controller.platform.rules import Stage

__all__ = ["TARGET_APP_ENV", "AlipayPlatform", "open_alipay"]

TARGET_APP_ENV = "RELCTL_ALIPAY_TARGET_APP"
DEFAULT_TARGET_APP = "alipay"

#: Alipay's ``status`` -> relctl's stage, before the build and experience queries refine it.
STAGES: dict[str, Stage] = {
    "INIT": Stage.NEW_VERSION_CREATED,
    "AUDITING": Stage.UNDER_REVIEW,
    "AUDIT_REJECT": Stage.REJECTED,
    "WAIT_RELEASE": Stage.RELEASE_PREPARATION,
    "GRAY": Stage.GRAYSCALE,
    "RELEASE": Stage.FULL_RELEASE,
    "OFFLINE": Stage.ARCHIVED,  # CANCELED when it was never online (no gmt_online)
}

#: ``version.build.query``'s ``create_status`` -> stage (anything else: the version exists).
BUILD_STAGES = {"0": Stage.BUILDING, "1": Stage.BUILDING, "3": Stage.BUILD_FAILED,
                "5": Stage.BUILD_FAILED}  # fmt: skip

#: Percentages ``version.gray.online`` takes (``gray_strategy`` pNN).
GRAY_PERCENTS = tuple(sorted(wire.GRAY_STRATEGIES.values()))

_ENVIRONMENT = "production"
_APPROVED_STAGES = frozenset(
    {Stage.PILOT_TESTING, Stage.RELEASE_PREPARATION, Stage.GRAYSCALE, Stage.FULL_RELEASE}
)
_BASIC_INFO_FIELDS = {name: field for field, name in wire.BASE_INFO.items()}
_LAUNCH = "alipays://platformapi/startapp"
_VERSION = re.compile(r"[0-9A-Za-z._-]{1,64}")

T = TypeVar("T")


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.strptime(text, wire.TIME_FORMAT).replace(tzinfo=wire.BEIJING)
    except ValueError:
        return None


@lru_cache(maxsize=32)
def _svg(url: str) -> str:
    import segno

    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=4, xmldecl=False)
    return buffer.getvalue().decode()


def open_alipay(rest: str, environ: Mapping[str, str] | None = None) -> AlipayPlatform:
    """The adapter of ``alipay:REST``: REST is the gateway URL, or empty for the default."""
    env = os.environ if environ is None else environ
    url = rest.strip() or env.get(GATEWAY_URL_ENV, "").strip() or DEFAULT_GATEWAY
    client = AlipayClient(credentials_from_env(env), url)
    target = env.get(TARGET_APP_ENV, "").strip() or DEFAULT_TARGET_APP
    return AlipayPlatform(client, target_app=target)


class AlipayPlatform:
    """A ``Platform`` over Alipay's mini-program release API, for one app."""

    def __init__(
        self,
        client: AlipayClient,
        *,
        target_app: str = DEFAULT_TARGET_APP,
        repeats: int = 2,
        sleep: Callable[[float], None] | None = None,
        backoff: float = 0.5,
    ) -> None:
        self._client = client
        self.target_app = target_app
        self._repeats = max(repeats, 0)
        self._sleep = sleep or time.sleep
        self._backoff = backoff

    @property
    def app_id(self) -> str:
        return self._client.app_id

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"AlipayPlatform({self.app_id!r}, {self._client.gateway_url!r})"

    # --- identity -------------------------------------------------------------------------
    def _check_app(self, mini_program: str, target_app: str | None = None) -> None:
        if mini_program != self.app_id:
            raise NotFound(
                f"the Alipay adapter serves the app {self.app_id} (RELCTL_ALIPAY_APP_ID); "
                f"mini program {mini_program!r} is another Alipay app with its own keys"
            )
        if target_app is not None and target_app != self.target_app:
            raise NotFound(
                f"the Alipay adapter releases to the target app {self.target_app!r} only; "
                f"{target_app!r} is not served by it (relctl.yaml's platform: alipay:)"
            )

    def release_id(self, version: str) -> str:
        return f"{self.app_id}@{version}"

    def _version_of(self, release_id: str) -> str:
        app, sep, version = release_id.rpartition("@")
        if not sep or not version:
            raise NotFound(f"{release_id!r} is not a release id of the Alipay adapter")
        self._check_app(app)
        return version

    # --- observation ----------------------------------------------------------------------
    def _listed(self) -> list[dict[str, Any]]:
        """The app's versions on Alipay (``version.list.query``), as ``{"app_version": ...}``.

        A version that is not a plain version string (at most 64 of ``0-9A-Za-z._-``) is left
        out: relctl could neither name its release nor order it.
        """
        result = self._client.call("alipay.open.mini.version.list.query", {}, mutation=False)
        infos = result.get("app_version_infos")
        if not isinstance(infos, list):
            versions = result.get("app_versions")
            infos = [{"app_version": v} for v in versions] if isinstance(versions, list) else []
        return [
            info for info in infos
            if isinstance(info, dict) and _VERSION.fullmatch(str(info.get("app_version", "")))
        ]  # fmt: skip

    def get_version(self, mini_program: str, version: str) -> VersionInfo | None:
        """A version exists on Alipay once it was uploaded (IDE, ``version.upload``)."""
        self._check_app(mini_program)
        if not any(info["app_version"] == version for info in self._listed()):
            return None
        snapshot = self._snapshot(version)
        return VersionInfo(mini_program, version, snapshot.created_at)

    def get_release(self, release_id: str) -> ReleaseSnapshot:
        return self._snapshot(self._version_of(release_id))

    def find_releases(self, mini_program: str, target_app: str) -> list[ReleaseSnapshot]:
        self._check_app(mini_program, target_app)
        found = []
        for info in self._listed():
            try:
                found.append(self._snapshot(info["app_version"]))
            except NotFound:  # deleted between the list and the detail: no longer there
                continue
        return sorted(found, key=lambda s: s.created_at)  # stable: Alipay's order on ties

    def get_feedback(self, release_id: str) -> Feedback:
        self._version_of(release_id)
        raise InvalidState(
            "Alipay's release API has no feedback metrics: measure with a Prometheus or web "
            "metric instead of provider platform"
        )

    def _snapshot(self, version: str) -> ReleaseSnapshot:
        """Everything Alipay tells about one version, as relctl's snapshot."""
        biz = {"app_version": version}
        detail = self._client.call("alipay.open.mini.version.detail.query", biz, mutation=False)
        status = str(detail.get("status", ""))
        if status not in STAGES:
            raise InvalidState(f"{self.app_id} {version}: Alipay status {status!r} is unknown")
        stage = STAGES[status]
        if status == "INIT":
            built = self._client.call("alipay.open.mini.version.build.query", biz, mutation=False)
            stage = BUILD_STAGES.get(str(built.get("create_status", "")), stage)
        testers: tuple[str, ...] = ()
        if status == "WAIT_RELEASE":
            experience = self._client.call("alipay.open.mini.experience.query", biz, mutation=False)
            if experience.get("status") == wire.EXPERIENCE_PACKAGED:
                stage = Stage.PILOT_TESTING
                testers = tuple(self._members())
        online = _time(detail.get("gmt_online"))
        if status == "OFFLINE" and online is None:
            stage = Stage.CANCELED
        created = _time(detail.get("gmt_create")) or datetime.fromtimestamp(0, UTC)
        applied = _time(detail.get("gmt_apply_audit"))
        decided = _time(detail.get("gmt_audit_end"))
        offline = _time(detail.get("gmt_offline"))
        stage_times: dict[Stage, datetime] = {Stage.NEW_VERSION_CREATED: created}
        if applied is not None:
            stage_times[Stage.UNDER_REVIEW] = applied
        if decided is not None and stage in (Stage.REJECTED, Stage.RELEASE_PREPARATION,
                                             Stage.PILOT_TESTING):  # fmt: skip
            stage_times[stage] = decided
        if online is not None:
            stage_times[Stage.FULL_RELEASE] = online
        if offline is not None and stage in (Stage.CANCELED, Stage.ARCHIVED):
            stage_times[stage] = offline
        known = [t for t in (created, applied, decided, online, offline) if t is not None]
        review = None
        reason = _words(detail.get("reject_reason"))
        if stage is Stage.REJECTED:
            review = Review(ReviewDecision.REJECTED, reason, False, decided or max(known))
        elif decided is not None and stage in _APPROVED_STAGES | {Stage.ARCHIVED}:
            review = Review(ReviewDecision.APPROVED, "", stage is Stage.PILOT_TESTING, decided)
        grayscale = 0
        if stage is Stage.GRAYSCALE:
            strategy = str(detail.get("gray_strategy", ""))
            grayscale = wire.GRAY_STRATEGIES.get(strategy, 0)
        elif stage is Stage.FULL_RELEASE:
            grayscale = 100
        basic_info = {
            name: str(detail[field])
            for field, name in wire.BASE_INFO.items()
            if isinstance(detail.get(field), str) and detail[field]
        }
        launch = f"{_LAUNCH}?{urlencode({'appId': self.app_id})}"
        released = stage in (Stage.GRAYSCALE, Stage.FULL_RELEASE)
        return ReleaseSnapshot(
            release_id=self.release_id(version),
            mini_program=self.app_id,
            version=version,
            target_app=self.target_app,
            environment=_ENVIRONMENT,
            stage=stage,
            basic_info=basic_info,
            configuration={},
            compatibility=CompatibilityReport(
                report_id=f"{self.release_id(version)}:no-test",
                status=CompatibilityStatus.FINISHED,
                pass_rate=0.0,
                cases=(),
                configuration_digest=configuration_digest({}),
                started_at=created,
                finished_at=created,
            ),
            review=review,
            testers=testers,
            grayscale=grayscale,
            stage_times=stage_times,
            qr_code=QrCode(url=launch, svg=_svg(launch)) if released else None,
            created_at=created,
            updated_at=max(known),
            message=reason if stage is Stage.REJECTED else "",
            extra={"alipay_status": status},
        )

    def _members(self) -> list[str]:
        result = self._client.call(
            "alipay.open.app.members.query", {"role": wire.EXPERIENCER}, mutation=False
        )
        found = result.get("app_member_info_list")
        if not isinstance(found, list):
            return []
        ids = {str(m.get("user_id") or m.get("logon_id") or "") for m in found
               if isinstance(m, dict)}  # fmt: skip
        return sorted(i for i in ids if i)

    # --- the safe change ------------------------------------------------------------------
    def _change(
        self,
        what: str,
        send: Callable[[], object],
        done: Callable[[], T | None],
        answer: Callable[[], T],
        *,
        checked: bool = False,
    ) -> T:
        """Make one change safely without idempotency keys.

        ``done`` reads the platform and answers the result when the change is in effect
        (else None); ``answer`` reads the result after a success. Already done: nothing is
        sent (``checked``: the caller has just read that it is not). ``Unknown``: read again
        before repeating (at most ``repeats`` times). A refusal: read again, and a release
        already in the asked state is a success (another attempt, or a person, got there
        first).
        """
        already = None if checked else done()
        if already is not None:
            return already
        attempt = 0
        while True:
            try:
                send()
            except Unknown as error:
                self._sleep(self._backoff * (2**attempt))
                try:
                    settled = done()
                except PlatformError:
                    raise error from None  # still unknown: the caller re-queries later
                if settled is not None:
                    return settled
                if attempt >= self._repeats:
                    raise Unknown(
                        f"{what}: {error.message}; not in effect after {attempt + 1} attempts"
                    ) from None
                attempt += 1
                continue
            except PlatformError as error:
                if error.retryable:
                    raise
                settled = done()
                if settled is not None:
                    return settled
                raise
            return answer()

    def _when(
        self, version: str, ok: Callable[[ReleaseSnapshot], bool]
    ) -> Callable[[], ReleaseSnapshot | None]:
        def check() -> ReleaseSnapshot | None:
            snapshot = self._snapshot(version)
            return snapshot if ok(snapshot) else None

        return check

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
        """``version.upload``; a version already on Alipay (uploaded from the IDE) is adopted."""
        self._check_app(mini_program, target_app)

        def listed() -> ReleaseSnapshot | None:
            if any(i["app_version"] == version for i in self._listed()):
                return self._snapshot(version)
            return None

        biz = {"app_version": version, "bundle_id": "com.alipay.alipaywallet"}
        return self._change(
            f"upload {version}",
            lambda: self._client.call("alipay.open.mini.version.upload", biz, mutation=True),
            listed,
            lambda: self._snapshot(version),
        )

    def update_basic_info(
        self, release_id: str, basic_info: Mapping[str, str], *, idempotency_key: str
    ) -> ReleaseSnapshot:
        """``mini.baseinfo.modify`` (name, slogan, description = app_name, app_slogan, app_desc)."""
        version = self._version_of(release_id)
        unknown = sorted(set(basic_info) - set(_BASIC_INFO_FIELDS))
        if unknown:
            raise NotEditable(f"Alipay's base info has no field for {', '.join(unknown)}")
        wanted = {k: str(v) for k, v in basic_info.items() if str(v)}
        params = {
            field: str(basic_info.get(name, "")) for name, field in _BASIC_INFO_FIELDS.items()
        }
        return self._change(
            f"update the base info of {version}",
            lambda: self._client.call(
                "alipay.open.mini.baseinfo.modify", None, mutation=True, text_params=params
            ),
            self._when(version, lambda s: dict(s.basic_info) == wanted),
            lambda: self._snapshot(version),
        )

    def update_configuration(
        self, release_id: str, configuration: Mapping[str, Any], *, idempotency_key: str
    ) -> ReleaseSnapshot:
        version = self._version_of(release_id)
        if configuration:
            raise NotEditable(
                f"{self.app_id} {version}: Alipay's release API has no package configuration "
                "(it is built into the uploaded package); leave spec.configuration empty for "
                "an alipay: platform"
            )
        return self._snapshot(version)

    def run_compatibility_test(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        """Alipay runs no compatibility test: the release's report is finished, without cases."""
        return self._snapshot(self._version_of(release_id))

    def apply(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        """``version.audit.apply``, the description as ``version_desc``."""
        version = self._version_of(release_id)
        current = self._snapshot(version)
        applied = _APPROVED_STAGES | {Stage.UNDER_REVIEW}
        if current.stage in applied:
            return current
        params = {"app_version": version}
        if current.basic_info.get("description"):
            params["version_desc"] = current.basic_info["description"]
        return self._change(
            f"apply {version} for release",
            lambda: self._client.call(
                "alipay.open.mini.version.audit.apply", None, mutation=True, text_params=params
            ),
            self._when(version, lambda s: s.stage in applied),
            lambda: self._snapshot(version),
            checked=True,
        )

    def withdraw(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        """``version.audit.cancel``: back to development (``INIT``)."""
        version = self._version_of(release_id)
        return self._version_call(
            "alipay.open.mini.version.audit.cancel", version,
            lambda s: s.stage is Stage.NEW_VERSION_CREATED,
        )  # fmt: skip

    def set_testers(
        self, release_id: str, testers: Sequence[str], *, idempotency_key: str
    ) -> TesterChange:
        """The app's experiencers: ``app.members.create`` / ``.delete``, one user a call."""
        version = self._version_of(release_id)
        wanted = sorted({str(t).strip() for t in testers if str(t).strip()})
        snapshot = self._snapshot(version)
        if snapshot.stage is not Stage.PILOT_TESTING:
            raise InvalidState(
                f"{self.app_id} {version} is {snapshot.stage}: testers are the experiencers of "
                "an experience version (pilot testing)"
            )
        limit = CAPABILITIES["alipay"].testers_max or len(wanted)
        if len(wanted) > limit:
            raise LimitExceeded(f"Alipay allows {limit} experiencers; {len(wanted)} asked")
        before = set(snapshot.testers)
        for user in sorted(set(wanted) - before):
            self._member(user, present=True)
        for user in sorted(before - set(wanted)):
            self._member(user, present=False)
        return TesterChange(
            added=tuple(sorted(set(wanted) - before)), removed=tuple(sorted(before - set(wanted)))
        )

    def _member(self, user: str, *, present: bool) -> None:
        """Add (``app.members.create``) or remove (``.delete``) one experiencer."""
        if present:
            method, biz = "create", {"logon_id": user, "role": wire.EXPERIENCER}
        else:
            method, biz = "delete", {"user_id": user, "role": wire.EXPERIENCER}

        def done() -> bool | None:
            return True if (user in self._members()) is present else None

        self._change(
            f"{'add' if present else 'remove'} experiencer {user}",
            lambda: self._client.call(f"alipay.open.app.members.{method}", biz, mutation=True),
            done,
            lambda: True,
            checked=True,  # set_testers has just read the experiencers
        )

    def complete_testing(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        """``experience.cancel``: the experience version ends, the version waits for release."""
        version = self._version_of(release_id)
        return self._version_call(
            "alipay.open.mini.experience.cancel", version,
            lambda s: s.stage in (Stage.RELEASE_PREPARATION, Stage.GRAYSCALE, Stage.FULL_RELEASE),
        )  # fmt: skip

    def cancel(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        """``version.gray.cancel`` in grayscale, ``version.audited.cancel`` once approved."""
        version = self._version_of(release_id)
        snapshot = self._snapshot(version)
        if snapshot.stage is Stage.CANCELED:
            return snapshot
        if snapshot.stage is Stage.GRAYSCALE:
            method = "alipay.open.mini.version.gray.cancel"
        elif snapshot.stage in (Stage.PILOT_TESTING, Stage.RELEASE_PREPARATION):
            method = "alipay.open.mini.version.audited.cancel"
        else:
            raise InvalidState(
                f"{self.app_id} {version} is {snapshot.stage}: Alipay cancels an approved or "
                "grayscale version (audited.cancel, gray.cancel); withdraw one under review, "
                "or leave one in development unreleased"
            )
        return self._version_call(
            method, version, lambda s: s.stage is Stage.CANCELED, checked=True
        )

    def set_grayscale(
        self, release_id: str, percent: int, *, idempotency_key: str
    ) -> ReleaseSnapshot:
        """``version.gray.online`` with ``gray_strategy`` p10, p30 or p50 (100: full release)."""
        version = self._version_of(release_id)
        if percent == 100:
            return self.full_release(release_id, idempotency_key=idempotency_key)
        if percent not in GRAY_PERCENTS:
            allowed = ", ".join(f"p{p}" for p in GRAY_PERCENTS)
            raise LimitExceeded(f"Alipay's gray release takes {allowed} only; {percent}% asked")
        return self._change(
            f"gray release {version} to {percent}%",
            lambda: self._client.call(
                "alipay.open.mini.version.gray.online",
                {"app_version": version, "gray_strategy": f"p{percent}"},
                mutation=True,
            ),
            self._when(
                version,
                lambda s: (
                    (s.stage is Stage.GRAYSCALE and s.grayscale == percent)
                    or s.stage is Stage.FULL_RELEASE
                ),
            ),
            lambda: self._snapshot(version),
        )

    def full_release(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        """``version.online``."""
        version = self._version_of(release_id)
        return self._version_call(
            "alipay.open.mini.version.online", version, lambda s: s.stage is Stage.FULL_RELEASE
        )

    def create_qr_code(self, release_id: str, *, idempotency_key: str) -> QrCode:
        """``app.qrcode.create`` for a released version (repeating it makes another code)."""
        version = self._version_of(release_id)
        snapshot = self._snapshot(version)
        if snapshot.stage not in (Stage.GRAYSCALE, Stage.FULL_RELEASE):
            raise InvalidState(
                f"{self.app_id} {version} is {snapshot.stage}: a QR code is for a released version"
            )
        biz = {"url_param": "pages/index/index", "query_param": f"version={version}",
               "describe": f"{self.app_id} {version}"}  # fmt: skip
        attempt = 0
        while True:
            try:
                result = self._client.call("alipay.open.app.qrcode.create", biz, mutation=True)
                break
            except Unknown:  # a QR code is no state: asking again has no second effect
                if attempt >= self._repeats:
                    raise
                self._sleep(self._backoff * (2**attempt))
                attempt += 1
        url = result.get("qr_code_url")
        if not isinstance(url, str) or not url:
            raise InvalidState(f"app.qrcode.create answered no qr_code_url for {version}")
        return QrCode(url=url, svg=_svg(url))

    def _version_call(
        self,
        method: str,
        version: str,
        ok: Callable[[ReleaseSnapshot], bool],
        *,
        checked: bool = False,
    ) -> ReleaseSnapshot:
        return self._change(
            f"{method.removeprefix('alipay.open.')} {version}",
            lambda: self._client.call(method, {"app_version": version}, mutation=True),
            self._when(version, ok),
            lambda: self._snapshot(version),
            checked=checked,
        )


def _words(text: Any) -> str:
    """Alipay's words for a person, on one line and cut (they are untrusted input)."""
    value = " ".join(str(text or "").split())
    return value if len(value) <= 200 else value[:197] + "..."
