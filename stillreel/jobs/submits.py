"""Submits written in groups by one writer thread: every submit waiting at the moment goes into
one transaction.

``JobStore.submit`` was one transaction per request, built with SQLAlchemy's expression layer
(statement building and cache-key work was most of its CPU time), then a re-read of the row just
written and a COUNT for its queue position: 0.05-0.08x the rate of a FastAPI route that only
parses the body (BENCHMARKS.md). Here:

- group commit: a submit queues its row for the writer thread, which writes every row queued
  while it was busy in one transaction (SQLite: one BEGIN IMMEDIATE and one WAL write;
  PostgreSQL: one commit flush), so under load the transaction's fixed cost is shared;
- one writer thread, not the submitting threads taking turns: the event loop hands a row over
  and awaits it (``submit_async``: no thread-pool hop per submit, and one wake-up of the loop
  per group), and the thread switches of many threads queueing on one lock (futex wake-ups:
  more system than user time in the profile) are gone;
- one plain statement each to read the queue's length and to insert the rows; the ``Job`` is made
  from the values written, not read back;
- queue positions from the queue's length per priority read in the same transaction, before the
  insert: every queued row already there at this priority or higher is older, so ahead; rows of
  the same group count as if written one after the other;
- few calls into the database per group. Each call releases the GIL, and under load taking it
  back from the event loop cost the writer more than the call (a bare ``time.sleep(0)`` waited
  1.6 ms on average), so the group's wall time, which every submit of it waits out, was mostly
  these waits. SQLite: the writer keeps its own connection, reads the queue's length from a row
  per priority kept by triggers (``schema.install_queue_depth``) and takes ``seq`` from
  ``lastrowid``; PostgreSQL: count, insert and NOTIFY are one statement (``_write_at_once``).

Each submit returns only once its group committed; when the transaction fails (the database is
away) every submit of the group raises that error, as each would have alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
import time
import uuid

from stillreel.jobs.changes import QUEUE_CHANNEL
from stillreel.jobs.schema import QUEUE_DEPTH_SQL, QUEUED, Job, QueueFull

MAX_GROUP = 64  # rows per transaction (SQLite's statement parameters: 15 per row)
_COLUMNS = ("id", "endpoint_id", "status", "priority", "input", "plan", "engine", "base_url", "key_id",
            "webhook_url", "start_deadline", "attempts", "progress", "created_at", "lease_until")
_JSON = frozenset(("input", "plan", "engine"))
_STOP = None  # the writer thread's sentinel (``GroupWriter.close``)


class _Submit:
    """One submit on its way through the writer: ``future`` (a submit from the event loop) or
    ``done`` (a blocking submit from any thread) says when it was written."""

    __slots__ = ("values", "params", "max_queue", "job", "position", "error", "done", "future")

    def __init__(self, values: dict, max_queue: int | None, future: asyncio.Future | None = None):
        self.values = values
        # Serialised by the submitter, not by the writer thread (which every submit waits on).
        self.params = tuple(json.dumps(values[c]) if c in _JSON else values[c] for c in _COLUMNS)
        self.max_queue = max_queue
        self.job: Job | None = None
        self.position = 0
        self.error: BaseException | None = None
        self.done = None if future is not None else threading.Event()
        self.future = future

    def outcome(self) -> tuple[Job, int]:
        if self.error is not None:
            raise self.error
        return self.job, self.position


class GroupWriter:
    def __init__(self, store):
        self.store = store
        self._queue: queue.SimpleQueue[_Submit | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False
        self._lock = threading.Lock()  # guards the thread's start and stop against queueing
        dialect = store.db.dialect
        self._pg = dialect.name == "postgresql"
        mark = "%s" if dialect.paramstyle in ("format", "pyformat") else "?"
        self._row = "(" + ", ".join(f"CAST({mark} AS JSON)" if c in _JSON and self._pg else mark for c in _COLUMNS) + ")"
        quote = dialect.identifier_preparer.quote
        self._insert_head = f"INSERT INTO requests ({', '.join(quote(c) for c in _COLUMNS)}) VALUES "
        self._count_sql = f"SELECT priority, count(*) FROM requests WHERE status = {mark} GROUP BY priority"
        self._inserts: dict[int, str] = {}  # n rows: INSERT; -n: _write_at_once
        self._conn = None  # SQLite: the writer thread's own connection

    def submit(self, **fields) -> tuple[Job, int]:
        """Queue a request (``JobStore.submit``'s fields); blocks until its group is written."""
        entry = self._entry(fields, None)
        entry.done.wait()
        return entry.outcome()

    async def submit_async(self, **fields) -> tuple[Job, int]:
        """``submit`` for the event loop: awaits the group's transaction without blocking the loop."""
        future = asyncio.get_running_loop().create_future()
        entry = self._entry(fields, future)
        await asyncio.shield(future)  # a caller going away does not undo a submit being written
        return entry.outcome()

    def _entry(self, fields: dict, future: asyncio.Future | None) -> _Submit:
        hold_until = fields.pop("hold_until", None)
        max_queue = fields.pop("max_queue", None)
        # ``lease_until`` of a queued row is the end of its --faults queue_delay hold.
        values = dict(id=new_request_id(), status=QUEUED, attempts=0, progress=0.0, created_at=time.time(),
                      lease_until=hold_until, **fields)
        entry = _Submit(values, max_queue, future)
        with self._lock:  # so that no entry lands behind ``close``'s stop, where none would read it
            if self._closed:
                raise RuntimeError("the job store is closed")
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._start_thread()
            self._queue.put(entry)
        return entry

    def _start_thread(self) -> None:
        """Started on first use (a store that never takes a submit has none), and again in a
        forked process, which has the parent's queue but not its thread."""
        if self._pid != os.getpid():  # the parent's connection is the parent's: not used, not closed
            self._pid, self._queue, self._conn = os.getpid(), queue.SimpleQueue(), None
        self._thread = threading.Thread(target=self._run, name="stillreel-submits", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Refuse new submits, let the writer finish what is queued, then stop it."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout=10)
        if self._conn is not None and self._pid == os.getpid():
            self._drop_connection()

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is _STOP:
                return
            group = [entry]
            stop = False
            while len(group) < MAX_GROUP:  # everything that queued up while the last group was written
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is _STOP:
                    stop = True
                    break
                group.append(entry)
            self._write(group)
            self._deliver(group)
            if stop:
                return

    @staticmethod
    def _deliver(group: list[_Submit]) -> None:
        """Wake each waiter: a blocking submit through its event, the event loop's once per group."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Submit]] = {}
        for entry in group:
            if entry.future is None:
                entry.done.set()
            else:
                by_loop.setdefault(entry.future.get_loop(), []).append(entry)
        for loop, entries in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, entries)
            except RuntimeError:  # that loop has closed: nobody is waiting any more
                pass

    def _write(self, group: list[_Submit]) -> None:
        try:
            if not self._pg:
                accepted, seqs = self._write_sqlite(group)
            elif all(entry.max_queue is None for entry in group):
                accepted, seqs = self._write_at_once(group)
            else:
                with self.store.write() as conn:
                    accepted = self._place(group, dict(conn.exec_driver_sql(self._count_sql, (QUEUED,)).all()))
                    seqs = {}
                    if accepted:
                        params = tuple(v for entry in accepted for v in entry.params)
                        seqs = dict(conn.exec_driver_sql(self._insert(len(accepted)), params).all())
                        conn.exec_driver_sql(f"NOTIFY {QUEUE_CHANNEL}")  # other processes: changes.QueueWatch
            for entry in accepted:
                v = entry.values
                entry.job = Job(seq=seqs[v["id"]], worker_id=None, result=None, error=None, error_type=None,
                                error_status=None, started_at=None, finished_at=None, inference_time=None, **v)
        except BaseException as exc:  # never out of the writer thread: every waiter gets the error
            for entry in group:  # all of them: it may have failed before any was accepted (no connection)
                if entry.error is None:
                    entry.error = exc

    def _write_sqlite(self, group: list[_Submit]) -> tuple[list[_Submit], dict[str, int]]:
        """SQLite: the group in one transaction on the writer's own connection, in as few calls as
        it takes (the module doc): the queue's length from ``queue_depth``, the rows' ``seq`` from
        ``lastrowid`` instead of a ``RETURNING`` row (a call) each."""
        if self._conn is None:
            self._conn = self.store.db.connect()
        try:
            with self.store.write(self._conn) as conn:
                accepted = self._place(group, dict(conn.exec_driver_sql(QUEUE_DEPTH_SQL).all()))
                seqs = {}
                if accepted:
                    params = tuple(v for entry in accepted for v in entry.params)
                    last = conn.exec_driver_sql(self._insert(len(accepted)), params).lastrowid
                    # One INSERT's rows get consecutive seqs (AUTOINCREMENT: the largest + 1, row by
                    # row, with no other writer between them), in the order of its VALUES.
                    first = last - len(accepted) + 1
                    seqs = {entry.values["id"]: first + i for i, entry in enumerate(accepted)}
        except BaseException:
            self._drop_connection()  # a new one next time
            raise
        return accepted, seqs

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()  # not back to the pool: it may be broken (the database went away)
            except Exception:
                pass

    @staticmethod
    def _place(group: list[_Submit], counts: dict[int, int]) -> list[_Submit]:
        """Positions from the queue's count per priority before the group (every queued row at the
        same priority or higher is older, so ahead), as if the group's submits came one after the
        other; ``max_queue`` likewise. Returns the submits to insert."""
        accepted = []
        waiting = sum(counts.values())
        for entry in group:
            if entry.max_queue is not None and waiting >= entry.max_queue:
                entry.error = QueueFull(waiting)
                continue
            priority = entry.values["priority"]
            entry.position = sum(n for p, n in counts.items() if p >= priority)
            counts[priority] = counts.get(priority, 0) + 1
            waiting += 1
            accepted.append(entry)
        return accepted

    def _write_at_once(self, group: list[_Submit]) -> tuple[list[_Submit], dict[str, int]]:
        """PostgreSQL, no ``max_queue`` in the group (nothing to decide before inserting): the
        count, the insert and the NOTIFY in one statement, in autocommit: one round trip instead
        of five (BEGIN, count, insert, NOTIFY, COMMIT), which matters with the database on another
        host (on loopback, under group commit, the difference was within the noise). Every part
        of the statement sees the same snapshot: the count is the queue before these rows."""
        sql = self._inserts.get(-len(group))
        if sql is None:
            sql = self._inserts[-len(group)] = (
                f"WITH ahead (priority, n) AS ({self._count_sql}), ins AS ({self._insert(len(group))}) "
                "SELECT 'r', id, seq FROM ins UNION ALL SELECT 'c', CAST(priority AS TEXT), n FROM ahead "
                f"UNION ALL SELECT 'n', NULL, 0 FROM (SELECT pg_notify('{QUEUE_CHANNEL}', '')) AS notify"
            )
        params = (QUEUED, *(v for entry in group for v in entry.params))
        with self.store.db.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = conn.exec_driver_sql(sql, params).all()
        seqs = {a: b for kind, a, b in rows if kind == "r"}
        return self._place(group, {int(a): b for kind, a, b in rows if kind == "c"}), seqs

    def _insert(self, n: int) -> str:
        """The INSERT of ``n`` rows; on PostgreSQL with their ``seq`` (SQLite: ``lastrowid``)."""
        sql = self._inserts.get(n)
        if sql is None:
            sql = self._inserts[n] = (self._insert_head + ", ".join([self._row] * n)
                                      + (" RETURNING id, seq" if self._pg else ""))
        return sql


_ids: list[str] = []
os.register_at_fork(after_in_child=_ids.clear)  # a forked process must not hand out its parent's ids


def new_request_id() -> str:
    """A random (version 4) UUID, as ``uuid.uuid4`` makes, from random bytes read 256 ids at a
    time: ``uuid4``'s one ``getrandom`` call per id drops the GIL, and taking it back from the
    writer and worker threads cost a submit more than the rest of its id (15 % of the event loop's
    time under load, BENCHMARKS.md). ``list.pop`` is atomic: no two callers get the same id."""
    try:
        return _ids.pop()
    except IndexError:
        raw = os.urandom(16 * 256)
        _ids.extend(str(uuid.UUID(bytes=raw[i:i + 16], version=4)) for i in range(0, len(raw), 16))
        return _ids.pop()


def _resolve(entries: list[_Submit]) -> None:
    for entry in entries:
        if not entry.future.done():
            entry.future.set_result(None)
