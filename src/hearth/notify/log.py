"""The structured-log sink: one JSON line per notice (docs/design.md, "Sink formats").

Lines go to the ``hearth.alarm`` logger (level by severity) and, when ``[alarms.log] path`` is
set, are appended to that file, one canonical JSON document per line (JSON Lines). A notice
holds no PHI (``hearth.notify.notice``), so neither does the line.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from hearth.domain import HearthError, Severity, errors
from hearth.notify.notice import Notice, notice_json

__all__ = ["LogSink"]

log = logging.getLogger("hearth.alarm")

_LEVELS = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.CRITICAL: logging.CRITICAL,
}


class LogSink:
    def __init__(
        self, *, name: str = "log", path: Path | None = None, min_severity: Severity = Severity.INFO
    ) -> None:
        self.name = name
        self.min_severity = min_severity
        self._path = path
        self._lock = threading.Lock()

    def send(self, notice: Notice) -> None:
        line = notice_json(notice)
        log.log(_LEVELS[notice.alarm.severity], "%s", line.decode("utf-8"))
        if self._path is None:
            return
        try:
            with self._lock:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line + b"\n")
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise HearthError(
                errors.ALARM_DELIVERY_FAILED, f"cannot append to the alarm log ({exc.strerror})"
            ) from None
