"""The server's request log: a JSONL file that never holds a partial row and never fails a request.

A server's log is evidence, but it is not the answer: when a write fails (a full disk, a path that cannot be
created, a file system gone read-only) the rows of that write are rolled back to the file's previous length, kept
in a bounded backlog and written before the next rows once writes succeed again; rows beyond the backlog are
dropped and counted. ``stats()`` is what ``/healthz`` shows.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


class RequestLog:
    def __init__(self, path: str | Path, max_backlog: int = 10_000):
        self.path, self.max_backlog = Path(path), max_backlog
        self._backlog: list[bytes] = []
        self._lock = threading.Lock()
        self.rows_written = self.rows_dropped = self.write_errors = 0
        self.last_error: str | None = None

    def write(self, rows: list[dict]) -> bool:
        """Append rows (after any backlog); True if they reached the disk."""
        from ..runs import json_line

        encoded = []
        for row in rows:
            try:
                encoded.append(json_line(row).encode("utf-8"))
            except (TypeError, ValueError, UnicodeEncodeError) as e:  # a row that cannot be logged is not a row
                self._fail(e, dropped=1)
        with self._lock:
            pending = self._backlog + encoded
            try:
                self._append(b"".join(pending))
            except OSError as e:
                overflow = max(0, len(pending) - self.max_backlog)
                self._backlog = pending[overflow:]
                self._fail(e, dropped=overflow)
                return False
            self._backlog = []
            self.rows_written += len(pending)
            return True

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                try:  # roll a partial write back, so the file ends on a whole row
                    os.ftruncate(fd, start)
                except OSError:
                    pass  # not a regular file (e.g. /dev/full): nothing was kept there anyway
                raise
        finally:
            os.close(fd)

    def _fail(self, e: Exception, dropped: int) -> None:
        self.write_errors += 1
        self.rows_dropped += dropped
        self.last_error = f"{type(e).__name__}: {e}"[:300]

    def stats(self) -> dict:
        return {
            "path": str(self.path),
            "rows_written": self.rows_written,
            "write_errors": self.write_errors,
            "rows_backlogged": len(self._backlog),
            "rows_dropped": self.rows_dropped,
            "last_error": self.last_error,
        }
