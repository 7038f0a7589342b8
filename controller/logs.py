"""Log lines of ``relctl run``: ``--log-format text`` for people, ``json`` for collectors.

JSON is one object per line: ``time``, ``level``, ``message``, and the fields a line carries
through ``extra={"event": {...}}``: ``release``, ``version``, ``phase``, ``action``,
``duration``, ``commit``. Every string goes through :func:`controller.gitops.redact` (a
credential in a remote URL never reaches a log), and secrets the process knows (webhook
secret, notification passwords) are masked wherever they appear.

Called by ``controller.cli`` (setup) and by every module that logs through ``relctl``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from controller.gitops import redact

__all__ = ["EVENT_FIELDS", "JsonFormatter", "TextFormatter", "setup_logging"]

#: The fields of a log event, in the order text lines show them.
EVENT_FIELDS = ("release", "version", "phase", "action", "duration", "commit")


class _Masking:
    """Redacts credentials in URLs and the known secret values in a line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(s for s in secrets if len(s) >= 4)

    def clean(self, text: str) -> str:
        text = redact(text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def _event(record: logging.LogRecord) -> dict[str, Any]:
    event = getattr(record, "event", None)
    return dict(event) if isinstance(event, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line (no newline inside: tracebacks are one escaped string)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._mask = _Masking(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._mask.clean(record.getMessage()),
        }
        for name, value in _event(record).items():
            line[name] = self._mask.clean(value) if isinstance(value, str) else value
        if record.exc_info:
            line["error"] = self._mask.clean(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, sort_keys=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL message key=value ...`` for people."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")
        self._mask = _Masking(secrets)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        event = _event(record)
        fields = [f"{k}={event[k]}" for k in EVENT_FIELDS if event.get(k) is not None]
        fields += [f"{k}={v}" for k, v in event.items() if k not in EVENT_FIELDS and v is not None]
        return self._mask.clean(" ".join([text, *fields]))


_MARK = "_relctl_handler"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each line."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def setup_logging(
    log_format: str,
    *,
    level: int = logging.INFO,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every log line of the process to ``stream`` (stderr) in ``log_format``."""
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    formatter: logging.Formatter = (
        JsonFormatter(secrets) if log_format == "json" else TextFormatter(secrets)
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):  # a second setup (tests run the CLI in-process) replaces ours
        if isinstance(old, _StderrHandler) or getattr(old, _MARK, False):
            root.removeHandler(old)
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's access log would print every probe, APScheduler every tick; their warnings
    # and errors still come through.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return handler
