"""The simulator's settings and pure platform rules: target-app settings, fault settings,
grayscale bucketing, the compatibility matrix and QR codes.

Nothing here touches the database or the clock; every function is pure, so the rules can be
tested (and documented) on their own. Called by ``controller.platform.sim.simulator`` and, for
settings and ``bucket``, by ``controller.cli_platform``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from controller.platform.protocol import CompatibilityCase, QrCode

#: Default user-id pattern of a super app (Alipay-style user ids: 16 digits).
DEFAULT_USER_ID_PATTERN = r"^[0-9]{16}$"
#: The deep-link host of the simulated platform's QR codes.
QR_BASE_URL = "https://render.alipay-plus.example/p/s/i/"


class ReviewMode(StrEnum):
    """How a target app reviews an application for release."""

    #: Approve after ``review_after`` seconds.
    AUTO = "auto"
    #: Only a person decides (``relctl platform review``).
    MANUAL = "manual"
    #: After ``review_after`` seconds: reject an empty description or a listed word, else approve.
    RULES = "rules"


@dataclass(frozen=True)
class AppSettings:
    """How one target (partner) app behaves on the simulated platform."""

    app_id: str
    name: str = ""
    #: Whether the platform requires pilot testing after approval for this app.
    pilot_required: bool = False
    review: ReviewMode = ReviewMode.AUTO
    review_after: float = 30.0
    build_seconds: float = 10.0
    test_seconds: float = 20.0
    testers_max: int = 50
    #: Allowed grayscale percentages; empty means every integer 1..100. 100 is always allowed.
    grayscale_values: tuple[int, ...] = ()
    user_id_pattern: str = DEFAULT_USER_ID_PATTERN
    #: Words that make a ``rules`` review reject the application when found in basic info.
    banned_words: tuple[str, ...] = ()
    #: Active users of the app (used for the "users on version" feedback metric).
    users: int = 100_000

    def allows_grayscale(self, percent: int) -> bool:
        if percent == 100:
            return True
        if not self.grayscale_values:
            return 1 <= percent <= 100
        return percent in self.grayscale_values

    def describe_grayscale_values(self) -> str:
        if not self.grayscale_values:
            return "1-100"
        return ",".join(str(v) for v in sorted({*self.grayscale_values, 100}))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["review"] = str(self.review)
        data["grayscale_values"] = list(self.grayscale_values)
        data["banned_words"] = list(self.banned_words)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AppSettings:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["review"] = ReviewMode(values.get("review", "auto"))
        values["grayscale_values"] = tuple(int(v) for v in values.get("grayscale_values", ()))
        values["banned_words"] = tuple(str(v) for v in values.get("banned_words", ()))
        return cls(**values)

    def updated(self, **changes: Any) -> AppSettings:
        """A copy with the given (validated) settings changed; None values are ignored."""
        settings = replace(self, **{k: v for k, v in changes.items() if v is not None})
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ValueError on settings that make no sense."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.app_id):
            raise ValueError(f"invalid app id {self.app_id!r}: use letters, digits, . _ -")
        for name in ("review_after", "build_seconds", "test_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.testers_max < 0:
            raise ValueError("testers_max must not be negative")
        if any(not 1 <= v <= 100 for v in self.grayscale_values):
            raise ValueError("grayscale values must be within 1..100")
        try:
            re.compile(self.user_id_pattern)
        except re.error as error:
            raise ValueError(f"invalid user id pattern {self.user_id_pattern!r}: {error}") from None


def parse_grayscale_values(text: str) -> tuple[int, ...]:
    """``"10,30,50"`` -> (10, 30, 50); ``""``, ``"all"`` or ``"1-100"`` -> () (every value)."""
    cleaned = text.strip().lower()
    if cleaned in ("", "all", "1-100"):
        return ()
    try:
        values = sorted({int(part) for part in cleaned.split(",") if part.strip()})
    except ValueError:
        raise ValueError(
            f"invalid grayscale values {text!r}: use a comma-separated list like 10,30,50"
        ) from None
    if any(not 1 <= v <= 100 for v in values):
        raise ValueError(f"invalid grayscale values {text!r}: each must be within 1..100")
    return tuple(values)


@dataclass(frozen=True)
class FaultSettings:
    """Fault injection, settable at run time; decisions are reproducible from ``seed``."""

    #: Share of calls that fail with Transient (nothing happened).
    error_rate: float = 0.0
    #: Share of mutations that happen but answer Unknown (the platform's "U" status).
    unknown_rate: float = 0.0
    #: Share of calls refused with RateLimited (nothing happened).
    rate_limited_rate: float = 0.0
    #: The ``retry_after`` a RateLimited error carries (seconds).
    retry_after: float = 1.0
    #: Real seconds every adapter call sleeps before answering.
    latency: float = 0.0
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.error_rate > 0 or self.unknown_rate > 0 or self.rate_limited_rate > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultSettings:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def validate(self) -> None:
        for name in ("error_rate", "unknown_rate", "rate_limited_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1 (got {value})")
        if self.latency < 0 or self.retry_after < 0:
            raise ValueError("latency and retry_after must not be negative")


# --- grayscale ------------------------------------------------------------------------------
def bucket(mini_program: str, user_id: str) -> int:
    """The user's stable bucket 1..100 for a mini program (sha256-based, Unleash style).

    A user gets a grayscale version when ``bucket <= percent``. Because the bucket does not
    depend on the percentage, raising the percentage only adds users: nobody who already had
    the new version loses it.
    """
    digest = hashlib.sha256(f"{mini_program}:{user_id}".encode()).hexdigest()
    return int(digest[:8], 16) % 100 + 1


def in_grayscale(mini_program: str, user_id: str, percent: int) -> bool:
    return bucket(mini_program, user_id) <= percent


# --- compatibility --------------------------------------------------------------------------
COMPAT_OS = ("android", "ios")
COMPAT_NETWORKS = ("wifi", "5g", "4g", "3g")
COMPAT_DEVICES = ("low-end", "mid-range", "flagship")


def parse_compat_failures(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"ios:3g,android:low-end"`` -> ("ios:3g", "android:low-end"), each token checked.

    A pattern is one or more tokens joined by ``:``; each token is an OS, network or device
    name of the matrix (or ``*``). A case fails when every token of a pattern matches it.
    """
    parts = [text] if isinstance(text, str) else list(text)
    patterns: list[str] = []
    known = {*COMPAT_OS, *COMPAT_NETWORKS, *COMPAT_DEVICES, "*"}
    for part in parts:
        for raw in part.split(","):
            pattern = raw.strip().lower()
            if not pattern:
                continue
            unknown = [t for t in pattern.split(":") if t not in known]
            if unknown:
                raise ValueError(
                    f"unknown compatibility token {unknown[0]!r} in {raw.strip()!r}: use "
                    f"os ({', '.join(COMPAT_OS)}), network ({', '.join(COMPAT_NETWORKS)}) or "
                    f"device ({', '.join(COMPAT_DEVICES)}), joined by ':'"
                )
            patterns.append(pattern)
    return tuple(patterns)


def compatibility_cases(failures: Sequence[str]) -> tuple[CompatibilityCase, ...]:
    """The full OS x network x device matrix; cases matching a failure pattern fail.

    Cached per failure list (the cases are frozen values): every snapshot of a finished report
    shows the matrix, and a listing of 10,000 releases would otherwise spend half its time here.
    """
    return _compatibility_cases(tuple(failures))


@functools.lru_cache(maxsize=256)
def _compatibility_cases(failures: tuple[str, ...]) -> tuple[CompatibilityCase, ...]:
    cases = []
    for os_name in COMPAT_OS:
        for network in COMPAT_NETWORKS:
            for device in COMPAT_DEVICES:
                fields = {os_name, network, device, "*"}
                failed = any(set(p.split(":")) <= fields for p in failures)
                cases.append(CompatibilityCase(os_name, network, device, passed=not failed))
    return tuple(cases)


def pass_rate(cases: Sequence[CompatibilityCase]) -> float:
    if not cases:
        return 0.0
    return round(100.0 * sum(c.passed for c in cases) / len(cases), 1)


# --- review rules ----------------------------------------------------------------------------
def rules_rejection(basic_info: Mapping[str, str], banned_words: Sequence[str]) -> str | None:
    """Why a ``rules`` review rejects this basic info, or None when it approves."""
    if not str(basic_info.get("description", "")).strip():
        return "basic info: the description is empty; describe what the mini program does"
    for field_name in sorted(basic_info):
        text = str(basic_info[field_name]).lower()
        for word in banned_words:
            if word and word.lower() in text:
                return f"basic info: {field_name} contains the word {word!r}, which is not allowed"
    return None


# --- QR codes ---------------------------------------------------------------------------------
def deep_link(mini_program: str, version: str, target_app: str) -> str:
    query = urlencode(
        {
            "scheme": f"{target_app}://platformapi/startapp?appId={mini_program}",
            "appId": mini_program,
            "version": version,
            "target": target_app,
        }
    )
    return f"{QR_BASE_URL}?{query}"


def qr_code(mini_program: str, version: str, target_app: str) -> QrCode:
    """The deep link of a released version and its QR code as SVG (rendered by segno)."""
    import segno

    url = deep_link(mini_program, version, target_app)
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=4, xmldecl=False)
    return QrCode(url=url, svg=buffer.getvalue().decode())


def qr_png(url: str, scale: int = 4) -> bytes:
    """The QR code of ``url`` as PNG bytes (for ``relctl platform show --qr-png``)."""
    import segno

    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="png", scale=scale)
    return buffer.getvalue()


@dataclass(frozen=True)
class UploadedVersion:
    """An uploaded version and how the simulated platform will treat it."""

    mini_program: str
    version: str
    uploaded_at: float
    compat_failures: tuple[str, ...] = ()
    build_fails: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
