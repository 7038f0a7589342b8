"""relctl's WeChat adapter: the ``Platform`` protocol over WeChat's mini program API.

``--platform wechat:`` (or ``wechat:https://HOST[/PREFIX]``, default ``https://api.weixin.qq.com``)
opens a :class:`WeChatPlatform` for one mini program: its app id and secret come from
``RELCTL_WECHAT_APP_ID`` and ``RELCTL_WECHAT_APP_SECRET`` and are never printed (not in errors,
logs or ``repr``). The mini program *is* the app id; releases go to one target app
(``wechat``); a manifest naming another mini program or target app is refused, naming it.

Three modules, one job each: :mod:`~controller.platform.wechat.wire` speaks WeChat's API
(token, timeouts, bounded retries, errcode -> typed error); this module maps the protocol onto
it and derives each release's stage from what WeChat says (:func:`derive_stage`, pure);
:mod:`~controller.platform.wechat.ledger` keeps what WeChat does not hold (docs/platforms.md,
"What WeChat does not hold").

WeChat calls name no version: they act on the mini program's trial / audited / gray version.
The adapter therefore refuses an operation on a release that is not in a stage where WeChat
would act on it. WeChat has no idempotency keys: a call whose release is already in the target
state succeeds without calling WeChat, and a mutation that answered ``Unknown`` is re-queried
before it is repeated.

Callers: :func:`controller.platform.open_platform` and tests.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from controller.platform.errors import (
    Conflict,
    InvalidState,
    NotEditable,
    NotFound,
    PlatformError,
    PlatformUnusable,
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
from controller.platform.wechat.wire import (
    APP_ID_ENV,
    APP_SECRET_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    WeChatWire,
    cut,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "TARGET_APP",
    "WITHDRAWN",
    "WeChatPlatform",
    "WeChatView",
    "derive_stage",
]

#: The target app name relctl's manifests use for WeChat.
TARGET_APP = "wechat"

#: The message of a version whose audit was withdrawn (audit status 3).
WITHDRAWN = "audit withdrawn (undocodeaudit)"


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
        self.app_id = app_id
        self.target_app = target_app
        self._clock = clock
        self._ledger = Ledger(ledger or Path(os.environ.get(LEDGER_ENV) or DEFAULT_LEDGER))
        self._wire = WeChatWire(
            base_url, app_id=app_id, app_secret=app_secret, timeout=timeout, retries=retries,
            max_retry_after=max_retry_after, backoff=backoff, sleep=sleep, clock=clock,
        )  # fmt: skip
        self.base_url = self._wire.base_url

    @property
    def calls(self) -> Mapping[str, int]:
        """Requests sent to WeChat so far, by path."""
        return self._wire.calls

    def close(self) -> None:
        self._wire.close()
        self._ledger.close()

    def __repr__(self) -> str:
        return f"WeChatPlatform({self.base_url!r}, app_id={self.app_id!r})"  # never the secret

    # --- observation ----------------------------------------------------------------------
    def _served(self, mini_program: str, target_app: str | None = None) -> None:
        if mini_program != self.app_id:
            raise NotFound(
                f"the WeChat adapter serves mini program {self.app_id} ({APP_ID_ENV}), not "
                f"{cut(mini_program, 80)!r}"
            )
        if target_app is not None and target_app != self.target_app:
            raise NotFound(
                f"the WeChat adapter releases to target app {self.target_app!r} only, not "
                f"{cut(target_app, 80)!r}: use targetApp: {self.target_app} for WeChat"
            )

    def _view(self) -> WeChatView:
        info = self._wire.call("POST", "getversioninfo", {})
        exp = info.get("exp_info") if isinstance(info.get("exp_info"), dict) else {}
        rel = info.get("release_info") if isinstance(info.get("release_info"), dict) else {}
        audit = self._wire.call("GET", "get_latest_auditstatus", ok=frozenset({85019}))
        if audit.get("errcode", 0) == 85019:
            audit = {}
        plan = self._wire.call("GET", "getgrayreleaseplan").get("gray_release_plan")
        plan = plan if isinstance(plan, dict) else {}
        gray = plan.get("gray_percentage") if plan.get("status") == 1 else 0
        status = audit.get("status")
        return WeChatView(
            trial_version=_version(exp.get("exp_version")),
            trial_time=_number(exp.get("exp_time")),
            trial_desc=cut(exp.get("exp_desc")),
            released_version=_version(rel.get("release_version")),
            released_time=_number(rel.get("release_time")),
            audit_version=_version(audit.get("user_version")),
            audit_status=status
            if isinstance(status, int) and not isinstance(status, bool)
            else None,
            audit_reason=cut(audit.get("reason")),
            audit_time=_number(audit.get("submit_audit_time")),
            gray_percentage=gray if isinstance(gray, int) and 0 <= gray <= 100 else 0,
            gray_time=_number(plan.get("create_timestamp")),
        )

    def _release_id(self, version: str) -> str:
        return f"{self.app_id}@{version}"

    def _version_of(self, release_id: str) -> str:
        appid, sep, version = release_id.rpartition("@")
        if not sep or appid != self.app_id or not version:
            raise NotFound(f"no WeChat release {cut(release_id, 80)!r} of {self.app_id}")
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
        raise NotFound(f"no WeChat release of {self.app_id} {cut(version, 40)}")

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
        found = self._wire.call("GET", "gettemplatelist").get("template_list")
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

        self._wire.mutate("commit", body, done)

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

        self._wire.mutate("submit_audit", {"item_list": []}, done)
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

        self._wire.mutate("undocodeaudit", None, done)

    def set_testers(
        self, release_id: str, testers: Sequence[str], *, idempotency_key: str
    ) -> TesterChange:
        record, snapshot = self._known(release_id)
        self._require(snapshot, {Stage.PILOT_TESTING}, "bind testers to")
        wanted = sorted({str(t) for t in testers})
        added = [t for t in wanted if t not in record.testers]
        removed = sorted(t for t in record.testers if t not in wanted)
        for wechatid in added:  # 85004: already a tester, so a repeat after Unknown is safe
            self._wire.mutate(
                "bind_tester", {"wechatid": wechatid}, lambda: False, frozenset({85004})
            )
            record.testers = sorted({*record.testers, wechatid})
            self._ledger.put(self.app_id, record)
        for wechatid in removed:
            self._wire.mutate("unbind_tester", {"wechatid": wechatid}, lambda: False)
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

            self._wire.mutate("revertgrayrelease", None, reverted)
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

        self._wire.mutate("grayrelease", {"gray_percentage": int(percent)}, reached)
        return self._current(record.version)[1]

    def full_release(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        record, snapshot = self._known(release_id)
        if snapshot.stage is Stage.FULL_RELEASE:
            return snapshot
        self._require(snapshot, {Stage.RELEASE_PREPARATION, Stage.GRAYSCALE}, "release")
        version = record.version

        def released() -> bool:
            return self._view().released_version == version

        self._wire.mutate("release", {}, released)
        return self._current(version)[1]

    def create_qr_code(self, release_id: str, *, idempotency_key: str) -> QrCode:
        record, snapshot = self._known(release_id)
        if record.qr_code is not None:
            return QrCode(**record.qr_code)
        self._require(snapshot, {Stage.GRAYSCALE, Stage.FULL_RELEASE}, "fetch the QR code of")
        answer = self._wire.call("GET", "get_qrcode", image=True)
        if not isinstance(answer, tuple):
            raise PlatformError("WeChat get_qrcode answered JSON without an image")
        image, media = answer
        qr = QrCode(url=f"{self.base_url}/wxa/get_qrcode", svg=_svg_of(image, media))
        record.qr_code = {"url": qr.url, "svg": qr.svg}
        self._ledger.put(self.app_id, record)
        return qr
