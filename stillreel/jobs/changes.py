"""Wake-ups for status streams and sync runs when a request changes.

Workers in this process call ``notify``; sync runs fall back to a short timeout, which covers
changes made by workers in other processes (PostgreSQL scale-out) at the cost of a little latency.
Status streams (SSE) instead share one ``StreamFeed`` per process: one task reads the marks of
every watched request in one query every ``POLL_S`` and notifies those that changed. (Each stream
polling the database itself every 0.25 s through the thread pool made 200 streams slow every
other caller's status from 5 to 122 ms.)
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import contextmanager

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from stillreel.jobs.schema import QUEUED, request_logs, requests

log = logging.getLogger("stillreel")
POLL_S = 0.25


class Changes:
    def __init__(self):
        self._lock = threading.Lock()
        self._waiters: dict[str | None, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        # Bumped on every change this process makes or hears of; the status fast path
        # (stillreel/api/fastpath.py) keeps a non-terminal answer only while it is unchanged.
        self.generation = 0

    def touch(self) -> None:
        """Record a change that no waiter needs waking for (a submit moves queue positions)."""
        with self._lock:
            self.generation += 1

    def notify(self, job_id: str | None) -> None:
        """Thread-safe. ``None`` wakes every waiter (queue positions moved)."""
        with self._lock:
            self.generation += 1
            if job_id is None:
                targets = [w for ws in self._waiters.values() for w in ws]
            else:
                targets = list(self._waiters.get(job_id, ()))
        for loop, event in targets:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # loop closed
                pass

    @contextmanager
    def listen(self, job_id: str):
        """An event that ``notify`` sets for ``job_id`` for as long as this lasts: the listener
        clears it before reading, so a change made while it reads is not lost."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[job_id]

    async def wait(self, job_id: str, timeout: float) -> None:
        with self.listen(job_id) as event:
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                pass


class TooManyStreams(Exception):
    pass


class StreamFeed:
    """The open status streams of one process (all on its event loop, so no lock).

    ``open``/``close`` count each key's streams against ``per_key``; ``watch`` adds a request to
    the set the poller reads. A request seen for the first time is notified at once (its stream
    read it before it was watched; a change in between must not wait for the next one)."""

    def __init__(self, changes: Changes, store, per_key: int, poll_s: float = POLL_S):
        self.changes = changes
        self.store = store
        self.per_key = per_key
        self.poll_s = poll_s
        self._open: dict[str | None, int] = {}
        self._watched: dict[str, int] = {}
        self._marks: dict[str, tuple | None] = {}
        self._queue_mark: tuple | None = None
        self._task: asyncio.Task | None = None
        self.polls = 0  # reads made (tests, and an order of magnitude for operators)

    def open(self, key_id: str | None) -> None:
        if self._open.get(key_id, 0) >= self.per_key:
            raise TooManyStreams(f"at most {self.per_key} status streams per key at once")
        self._open[key_id] = self._open.get(key_id, 0) + 1

    def close(self, key_id: str | None) -> None:
        left = self._open.get(key_id, 0) - 1
        if left > 0:
            self._open[key_id] = left
        else:
            self._open.pop(key_id, None)

    @contextmanager
    def watch(self, job_id: str):
        """The event set whenever ``job_id`` changes (``Changes.listen``), polled while watched."""
        self._watched[job_id] = self._watched.get(job_id, 0) + 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            with self.changes.listen(job_id) as event:
                yield event
        finally:
            left = self._watched.get(job_id, 0) - 1
            if left > 0:
                self._watched[job_id] = left
            else:
                self._watched.pop(job_id, None)
                self._marks.pop(job_id, None)

    async def _run(self) -> None:
        while self._watched:
            ids = list(self._watched)
            try:
                marks, queue = await run_in_threadpool(read_marks, self.store, ids)
            except Exception:  # the database is away: the streams keep their last answer
                log.warning("status streams: reading request marks failed", exc_info=True)
                await asyncio.sleep(self.poll_s * 4)
                continue
            self.polls += 1
            queue_moved = queue != self._queue_mark
            self._queue_mark = queue
            for job_id in ids:
                if job_id not in self._watched:
                    continue
                mark = marks.get(job_id)
                seen = job_id in self._marks
                if not seen or mark != self._marks[job_id] or (queue_moved and mark and mark[0] == QUEUED):
                    self._marks[job_id] = mark
                    self.changes.notify(job_id)
            await asyncio.sleep(self.poll_s)


def read_marks(store, job_ids: list[str]) -> tuple[dict[str, tuple], tuple]:
    """What the status streams watch, for many requests in one read: ``{id: (status, progress,
    last log seq)}`` and a mark of the queue as a whole (it moves when queue positions may)."""
    r, lg = requests.c, request_logs.c
    last_log = sa.select(sa.func.max(lg.seq)).where(lg.request_id == r.id).scalar_subquery()
    out: dict[str, tuple] = {}
    with store.read() as conn:
        for i in range(0, len(job_ids), 500):  # bounded IN lists
            rows = conn.execute(
                sa.select(r.id, r.status, r.progress, last_log).where(r.id.in_(job_ids[i : i + 500]))
            ).all()
            out.update({row[0]: tuple(row[1:]) for row in rows})
        queue = conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(r.seq), 0)).where(r.status == QUEUED)
        ).one()
    return out, tuple(queue)


QUEUE_CHANNEL = "stillreel_queue"  # PostgreSQL NOTIFY channel: submits (submits.GroupWriter) and claims


class QueueWatch:
    """Hears of submits and claims committed by *other* processes: this process's idle workers
    claim new requests at once rather than at their next poll (0.5 s), and its status fast path
    re-reads queued answers at once rather than after their 0.1 s: ``wake`` is set and the change
    generation bumped. (Through an API replica, submit → IN_PROGRESS took 121 ms without it.)

    PostgreSQL: ``LISTEN`` on ``QUEUE_CHANNEL``, which every group of submits and every claim
    notifies in its transaction (delivered at commit). SQLite has no notifications: ``PRAGMA data_version``, which
    changes when another connection commits, read every ``poll_s`` (a few microseconds, no lock).
    Either way this process's own commits are heard too; an extra wake-up costs one empty claim.
    While the database is away it retries with backoff; the workers' own polling goes on.
    """

    def __init__(self, store, changes: Changes, wakes: list[threading.Event], poll_s: float = 0.01):
        self.store = store
        self.changes = changes
        self.wakes = wakes
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heard = 0  # changes heard (tests)

    def start(self) -> None:
        target = self._sqlite if self.store.sqlite else self._postgres
        self._thread = threading.Thread(target=self._guarded, args=(target,), name="stillreel-queue-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _changed(self) -> None:
        self.heard += 1
        self.changes.touch()
        for wake in self.wakes:
            wake.set()

    def _guarded(self, target) -> None:
        from stillreel.jobs.outage import Backoff, OutageLog

        backoff, outage = Backoff(cap=10.0), OutageLog(log, "queue watch")
        while not self._stop.is_set():
            try:
                target(outage)
            except Exception as exc:
                outage.failed(exc)
                self._stop.wait(backoff.next())
            else:
                backoff.reset()

    def _sqlite(self, outage) -> None:
        conn = self.store.db.raw_connection()  # its own connection, for as long as this runs
        try:
            seen = None
            while not self._stop.is_set():
                cur = conn.cursor()
                version = cur.execute("PRAGMA data_version").fetchone()[0]
                cur.close()
                outage.ok()
                if seen is not None and version != seen:
                    self._changed()
                seen = version
                self._stop.wait(self.poll_s)
        finally:
            conn.close()

    def _postgres(self, outage) -> None:
        import psycopg

        url = self.store.db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"LISTEN {QUEUE_CHANNEL}")
            outage.ok()
            self._changed()  # whatever was submitted while nobody listened
            while not self._stop.is_set():
                for _ in conn.notifies(timeout=1.0):
                    self._changed()
                    if self._stop.is_set():
                        break
