"""The WeChat adapter's ledger: what relctl keeps because WeChat's API does not hold it.

WeChat's code management API knows the trial version (``getversioninfo``), the latest audit
(``get_latest_auditstatus``), the gray release plan and the released version. It does not
answer, for a version, the configuration relctl committed with it (``ext_json`` is delivered
to the mini program, never read back), the basic info's name and slogan, a compatibility
report (WeChat runs none), the testers bound for it (``memberauth`` answers opaque
``userstr``s, not WeChat ids), the QR code relctl fetched, that relctl completed pilot testing
or canceled the version (WeChat has no such steps), nor when relctl first saw each stage.

Those facts are written here, one JSON record per (appid, version), in one SQLite file
(``RELCTL_WECHAT_LEDGER``, default ``.relctl/wechat-ledger.db``), each in its own transaction
right after WeChat accepted the call it records. Everything WeChat *does* hold is read from
WeChat on every observation and never from here. A version WeChat shows that the ledger does
not know (committed from the console, or a lost ledger) is reported with an empty
configuration and a message saying so: nothing is made up.

Callers: :class:`controller.platform.wechat.adapter.WeChatPlatform` only.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from controller.platform.errors import PlatformUnusable

__all__ = ["DEFAULT_LEDGER", "LEDGER_ENV", "Ledger", "Record"]

LEDGER_ENV = "RELCTL_WECHAT_LEDGER"
DEFAULT_LEDGER = ".relctl/wechat-ledger.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS wechat_release (
    appid TEXT NOT NULL, version TEXT NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (appid, version)
);
CREATE TABLE IF NOT EXISTS wechat_counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass
class Record:
    """What relctl knows about one version of one mini program on WeChat (epoch seconds)."""

    version: str
    environment: str
    created_at: float
    updated_at: float
    template_id: int | None = None
    #: False from the moment relctl sends the first commit until WeChat shows the version;
    #: such a record is no release yet (the commit may not have happened).
    committed: bool = True
    configuration: dict[str, Any] = field(default_factory=dict)
    basic_info: dict[str, str] = field(default_factory=dict)
    #: {"id", "digest", "at"}: the report relctl wrote for a test WeChat does not run.
    report: dict[str, Any] | None = None
    testers: list[str] = field(default_factory=list)
    pilot_completed_at: float | None = None
    canceled_at: float | None = None
    cancel_reason: str = ""
    released_at: float | None = None
    #: {"url", "svg"}
    qr_code: dict[str, str] | None = None
    #: Stage value -> when relctl first saw it (or WeChat's own time, when WeChat gives one).
    stage_times: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a ledger record is not an object")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


class Ledger:
    """One SQLite file of :class:`Record`s; thread-safe, every write its own transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 30000")
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise PlatformUnusable(
                f"the WeChat ledger {path} cannot be used ({error}): set {LEDGER_ENV} to a "
                "writable file"
            ) from None

    def close(self) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as error:
            raise PlatformUnusable(f"the WeChat ledger {self.path} failed: {error}") from None

    def records(self, appid: str) -> list[Record]:
        rows = self._run("SELECT record FROM wechat_release WHERE appid = ?", (appid,))
        found: list[Record] = []
        for (text,) in rows:
            try:
                found.append(Record.from_json(text))
            except (ValueError, TypeError) as error:
                raise PlatformUnusable(
                    f"the WeChat ledger {self.path} holds an unreadable record ({error})"
                ) from None
        return sorted(found, key=lambda r: (r.created_at, r.version))

    def get(self, appid: str, version: str) -> Record | None:
        return next((r for r in self.records(appid) if r.version == version), None)

    def put(self, appid: str, record: Record) -> None:
        self._run(
            "INSERT INTO wechat_release (appid, version, record) VALUES (?, ?, ?) "
            "ON CONFLICT (appid, version) DO UPDATE SET record = excluded.record",
            (appid, record.version, record.to_json()),
        )

    def next_number(self, name: str) -> int:
        rows = self._run(
            "INSERT INTO wechat_counter (name, value) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            (name,),
        )
        return int(rows[0][0])
