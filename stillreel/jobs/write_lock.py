"""SQLite's one writer, queued for fairly: the threads of a process on a lock, processes on a file lock.

SQLite lets one connection write at a time; the others wait in its busy handler, which sleeps in
growing steps (up to 100 ms) and retries, so a waiter can lose to newcomers again and again.
Threads of one process queued on an in-process lock instead (submit p99 > 1 s without it), but
several processes on one database file (``--api-workers``, a separate ``stillreel worker``) still
met in the busy handler: 4 API processes under submits had a p99 of ~1 s. A blocking ``flock`` on
a file beside the database wakes the next waiter as soon as the lock is free.

Every write transaction of the job store takes this lock (``JobStore.write``); other writers
(schema creation) still work, through the busy handler.
"""

from __future__ import annotations

import fcntl
import os
import threading

import sqlalchemy as sa


def lock_file(url: str) -> str | None:
    """The file beside a SQLite database that its writers lock (None: in memory, one process)."""
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return database + ".writelock"


class WriteLock:
    """Re-entrant in one thread, like the ``RLock`` it wraps; the file lock is held while the
    outermost ``acquire`` is. ``path`` None (an in-memory database): the in-process lock only."""

    def __init__(self, path: str | None):
        self._lock = threading.RLock()
        self._path = path
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int:
        # A forked child shares its parent's open file (and so its flock): it opens its own.
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def acquire(self) -> None:
        self._lock.acquire()
        if self._depth == 0 and self._path is not None:
            try:
                fcntl.flock(self._file(), fcntl.LOCK_EX)
            except BaseException:
                self._lock.release()
                raise
        self._depth += 1

    def release(self) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._path is not None:
                fcntl.flock(self._file(), fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None
