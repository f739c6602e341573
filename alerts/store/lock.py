"""One alert engine per store: a non-blocking exclusive ``flock`` on a lock file.

Several API processes (``dynoscope serve --workers N``) share one SQLite database; if each ran
the in-process engine, every notification would go out N times. The first process to take the
lock runs the engine; the others run none. The kernel drops the lock when its holder dies, so
a restarted process takes over without any clean-up.

    >>> lock_path("sqlite+aiosqlite:///data/app.db")
    PosixPath('data/app.db.alerts.lock')
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url


def lock_path(database_url: str) -> Path | None:
    """Where the engine lock for ``database_url`` lives: next to a SQLite file, otherwise in the
    temporary directory under a hash of the URL; ``None`` for a private in-memory database."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            return None
        return Path(f"{database}.alerts.lock")
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"dynoscope-alerts-{digest}.lock"


class EngineLock:
    """An exclusive, non-blocking lock on one file; ``acquire`` says whether this holder got it.

    Locks conflict between two open file descriptions even in one process, so two apps in one
    test process see each other as two processes would.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self.path is None:
            return True
        # Beside the store, whose folder need not exist yet (the store makes it when opened).
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
