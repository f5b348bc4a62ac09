"""Submits written in groups: every submit waiting at the moment goes into one transaction.

``JobStore.submit`` was one transaction per request, built with SQLAlchemy's expression layer
(statement building and cache-key work was most of its CPU time), then a re-read of the row just
written and a COUNT for its queue position: 0.05-0.08x the rate of a FastAPI route that only
parses the body (BENCHMARKS.md). Here:

- group commit: a submitting thread queues its row; whichever thread holds the writer's lock
  writes every row queued so far in one transaction (SQLite: one BEGIN IMMEDIATE and one WAL
  write; PostgreSQL: one commit flush), so under load the transaction's fixed cost is shared;
- one plain statement each to count the queue and to insert the rows (``RETURNING seq``); the
  ``Job`` is made from the values written, not read back;
- queue positions from the count taken in the same transaction, before the insert: every queued
  row already there at this priority or higher is older, so ahead; rows of the same group count
  as if written one after the other.

Each submit returns only once its group committed; when the transaction fails (the database is
away) every submit of the group raises that error, as each would have alone.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

from stillreel.jobs.changes import QUEUE_CHANNEL
from stillreel.jobs.schema import QUEUED, Job, QueueFull

MAX_GROUP = 64  # rows per transaction (SQLite's statement parameters: 15 per row)
_COLUMNS = ("id", "endpoint_id", "status", "priority", "input", "plan", "engine", "base_url", "key_id",
            "webhook_url", "start_deadline", "attempts", "progress", "created_at", "lease_until")
_JSON = frozenset(("input", "plan", "engine"))


class _Submit:
    __slots__ = ("values", "params", "max_queue", "job", "position", "error", "done")

    def __init__(self, values: dict, max_queue: int | None):
        self.values = values
        # Serialised by the submitting thread, outside the writer's lock.
        self.params = tuple(json.dumps(values[c]) if c in _JSON else values[c] for c in _COLUMNS)
        self.max_queue = max_queue
        self.job: Job | None = None
        self.position = 0
        self.error: BaseException | None = None
        self.done = False


class GroupWriter:
    def __init__(self, store):
        self.store = store
        self._mutex = threading.Lock()  # guards ``_waiting``
        self._writer = threading.Lock()  # held by the thread writing a group
        self._waiting: list[_Submit] = []
        dialect = store.db.dialect
        self._pg = dialect.name == "postgresql"
        mark = "%s" if dialect.paramstyle in ("format", "pyformat") else "?"
        self._row = "(" + ", ".join(f"CAST({mark} AS JSON)" if c in _JSON and self._pg else mark for c in _COLUMNS) + ")"
        quote = dialect.identifier_preparer.quote
        self._insert_head = f"INSERT INTO requests ({', '.join(quote(c) for c in _COLUMNS)}) VALUES "
        self._count_sql = f"SELECT priority, count(*) FROM requests WHERE status = {mark} GROUP BY priority"
        self._inserts: dict[int, str] = {}

    def submit(self, *, endpoint_id: str, input: dict, plan: dict, engine: dict, base_url: str, priority: int,
               key_id: str | None, webhook_url: str | None, start_deadline: float | None,
               max_queue: int | None, hold_until: float | None) -> tuple[Job, int]:
        # ``lease_until`` of a queued row is the end of its --faults queue_delay hold.
        values = dict(id=str(uuid.uuid4()), endpoint_id=endpoint_id, status=QUEUED, priority=priority, input=input,
                      plan=plan, engine=engine, base_url=base_url, key_id=key_id, webhook_url=webhook_url,
                      start_deadline=start_deadline, attempts=0, progress=0.0, created_at=time.time(),
                      lease_until=hold_until)
        entry = _Submit(values, max_queue)
        with self._mutex:
            self._waiting.append(entry)
        while not entry.done:
            with self._writer:
                if entry.done:  # written by the thread that held the lock before
                    break
                with self._mutex:
                    group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
                self._write(group)
        if entry.error is not None:
            raise entry.error
        return entry.job, entry.position

    def _write(self, group: list[_Submit]) -> None:
        accepted: list[_Submit] = []
        try:
            if self._pg and all(entry.max_queue is None for entry in group):
                accepted, seqs = self._write_at_once(group)
            else:
                with self.store.write() as conn:
                    accepted = self._place(group, dict(conn.exec_driver_sql(self._count_sql, (QUEUED,)).all()))
                    if accepted:
                        params = tuple(v for entry in accepted for v in entry.params)
                        seqs = dict(conn.exec_driver_sql(self._insert(len(accepted)), params).all())
                        if self._pg:  # other processes: changes.QueueWatch (sent at commit)
                            conn.exec_driver_sql(f"NOTIFY {QUEUE_CHANNEL}")
        except BaseException as exc:
            for entry in group:  # all of them: it may have failed before any was accepted (no connection)
                if entry.error is None:
                    entry.error = exc
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and the like stop this thread, as before
        else:
            for entry in accepted:
                v = entry.values
                entry.job = Job(seq=seqs[v["id"]], worker_id=None, result=None, error=None, error_type=None,
                                error_status=None, started_at=None, finished_at=None, inference_time=None, **v)
        finally:
            for entry in group:
                entry.done = True

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
        sql = self._inserts.get(n)
        if sql is None:
            sql = self._inserts[n] = self._insert_head + ", ".join([self._row] * n) + " RETURNING id, seq"
        return sql
