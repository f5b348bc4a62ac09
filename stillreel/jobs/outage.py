"""Telling a transient outage (the database restarting, a full disk) from a bug, and riding it out.

A PostgreSQL restart takes seconds; a full disk lasts until someone frees space. Neither may stop a
worker for good or turn into a bare 500 or a FAILED request: workers wait with backoff and jitter
(so a fleet does not reconnect in lock-step) and log once per outage, not once per attempt; the API
answers 503 + Retry-After (507 for an upload that does not fit) in fal's ``{"detail": ...}`` shape.
"""

from __future__ import annotations

import errno
import logging
import random
import sqlite3
import time

import sqlalchemy.exc as sa_exc

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# SQLite reports a full disk as an OperationalError ("database or disk is full", SQLITE_FULL).
_SQLITE_FULL = "database or disk is full"


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT anywhere in the exception's chain (PyAV and SQLite included)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(exc, (sqlite3.OperationalError, sa_exc.OperationalError)) and _SQLITE_FULL in str(exc):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return False


def is_db_outage(exc: BaseException) -> bool:
    """The database cannot be reached or dropped the connection (a restart, a failover, a locked
    SQLite file): worth retrying, never the request's fault."""
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                        sa_exc.DisconnectionError)):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)


def is_transient(exc: BaseException) -> bool:
    """An outage: the database, the disk, or an error that says so itself (``transient = True``)."""
    return bool(getattr(exc, "transient", False)) or is_db_outage(exc) or is_disk_full(exc)


class Backoff:
    """Exponential delays with full jitter: ``first``, ×2 each failure, at most ``cap`` seconds."""

    def __init__(self, first: float = 0.2, cap: float = 5.0):
        self.first = first
        self.cap = cap
        self.failures = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.first * (2 ** self.failures))
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


class OutageLog:
    """Logs the first failure of an outage (with its cause) and its end; attempts in between are
    only counted, so a minute-long outage is two log lines, not hundreds."""

    def __init__(self, logger: logging.Logger, what: str, quiet_s: float | None = None):
        self.log = logger
        self.what = what
        # Where nothing reports success (API requests), a failure after ``quiet_s`` without one
        # starts a new outage.
        self.quiet_s = quiet_s
        self.since: float | None = None
        self.last = 0.0
        self.attempts = 0

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.quiet_s is not None and self.since is not None and now - self.last > self.quiet_s:
            self.since = None
            self.attempts = 0
        self.last = now
        self.attempts += 1
        if self.since is None:
            self.since = now
            kind = ("the database is unreachable" if is_db_outage(exc) else "the disk is full"
                    if is_disk_full(exc) else "unavailable" if is_transient(exc) else "unexpected error")
            self.log.warning("%s: %s (%s: %s); retrying with backoff", self.what, kind, type(exc).__name__,
                             str(exc).splitlines()[0] if str(exc) else "", exc_info=not is_transient(exc))

    def ok(self) -> None:
        if self.since is not None:
            self.log.warning("%s: recovered after %.1f s (%d failed attempts)", self.what,
                             time.monotonic() - self.since, self.attempts)
            self.since = None
            self.attempts = 0
