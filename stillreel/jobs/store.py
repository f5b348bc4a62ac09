"""The durable job store: one ``requests`` table is both the API's record and the queue.

SQLAlchemy Core, one code path for SQLite (the embedded default, WAL) and PostgreSQL (scale-out,
``FOR UPDATE SKIP LOCKED``; SQLAlchemy drops that clause on SQLite, whose single writer keeps the
claim atomic). Invariants:

- terminal states (SUCCEEDED, FAILED, CANCELED, TIMED_OUT) are final: every write checks the state;
- every worker write is fenced by (worker_id, attempts), so a worker whose lease was taken over
  cannot overwrite the new owner's work;
- the webhook outbox row is written in the same transaction as the terminal state.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from stillreel.jobs.bytecache import ByteBoundedCache, json_size
from stillreel.jobs import outbox
from stillreel.jobs.changes import QUEUE_CHANNEL
from stillreel.jobs.submits import GroupWriter
from stillreel.jobs.write_lock import WriteLock, lock_file
from stillreel.jobs.schema import (
    ACTIVE, CANCELED, CANCELING, FAILED, QUEUED, RUNNING, SUCCEEDED, Failure, Job,
    create_schema, make_engine, request_logs, requests,
)

# Finished rows (and their logs) kept in memory, bounded by bytes: an entry-count bound let a
# few requests with multi-megabyte rows hold hundreds of megabytes.
FINAL_CACHE_BYTES = 32 * 1024 * 1024
HISTORY_INPUT_BYTES = 256 * 1024  # larger inputs (older versions stored bodies whole) are not listed


class JobStore:
    def __init__(self, url: str):
        self.url = url
        self.db = make_engine(url)  # SQLAlchemy's Engine (not a video engine)
        self.sqlite = url.startswith("sqlite")
        self._final = ByteBoundedCache(FINAL_CACHE_BYTES)  # id -> (Job, logs)
        # SQLite has one writer; threads and processes queue for it here instead of in SQLite's
        # busy handler, which sleeps in growing steps (submits under load: p99 > 1 s without it).
        self._write_lock = WriteLock(lock_file(url)) if self.sqlite else None
        create_schema(self.db)
        self._submits = GroupWriter(self)

    def close(self) -> None:
        self._submits.close()
        self.db.dispose()
        if self._write_lock is not None:
            self._write_lock.close()

    # -- transactions ------------------------------------------------------------------------

    def write(self, conn=None):
        """A transaction that will write (SQLite: BEGIN IMMEDIATE), on a pooled connection, or on
        ``conn`` (a connection the caller keeps: it is left open)."""
        keep = conn is not None
        conn = conn if keep else self.db.connect()
        conn.info["write"] = True
        return _Tx(conn, self._write_lock, keep=keep)

    def read(self):
        conn = self.db.connect()
        conn.info["write"] = False
        return _Tx(conn)

    # -- submit / read -----------------------------------------------------------------------

    def enqueue(self, **fields) -> Job:
        return self.submit(**fields)[0]

    def submit(
        self,
        *,
        endpoint_id: str,
        input: dict,
        plan: dict,
        engine: dict,
        base_url: str,
        priority: int = 1,
        key_id: str | None = None,
        webhook_url: str | None = None,
        start_deadline: float | None = None,
        max_queue: int | None = None,
        hold_until: float | None = None,
    ) -> tuple[Job, int]:
        """Queue a request; returns it with its queue position (``submits.GroupWriter``: one
        transaction for every submit waiting at the moment).

        ``hold_until`` (fault injection's queue_delay): no worker claims it before then."""
        return self._submits.submit(
            endpoint_id=endpoint_id, input=input, plan=plan, engine=engine, base_url=base_url, priority=priority,
            key_id=key_id, webhook_url=webhook_url, start_deadline=start_deadline, max_queue=max_queue,
            hold_until=hold_until,
        )

    async def submit_async(
        self, *, endpoint_id: str, input: dict, plan: dict, engine: dict, base_url: str, priority: int = 1,
        key_id: str | None = None, webhook_url: str | None = None, start_deadline: float | None = None,
        max_queue: int | None = None, hold_until: float | None = None,
    ) -> tuple[Job, int]:
        """``submit`` from the event loop: the loop awaits the writer thread instead of blocking."""
        return await self._submits.submit_async(
            endpoint_id=endpoint_id, input=input, plan=plan, engine=engine, base_url=base_url, priority=priority,
            key_id=key_id, webhook_url=webhook_url, start_deadline=start_deadline, max_queue=max_queue,
            hold_until=hold_until,
        )

    def _get(self, conn, job_id: str) -> Job | None:
        row = conn.execute(sa.select(requests).where(requests.c.id == job_id)).mappings().first()
        return Job(**row) if row else None

    def get(self, job_id: str) -> Job | None:
        hit = self._final.get(job_id)
        if hit is not None:
            return hit[0]
        with self.read() as conn:
            return self._remember(self._get(conn, job_id), conn)

    def _remember(self, job: Job | None, conn) -> Job | None:
        # Terminal states are final, so a finished request (polled at 10 Hz by some clients)
        # is answered from memory: its row and its logs can no longer change.
        if job is not None and job.terminal and job.id not in self._final:
            logs = self._logs(conn, job.id, 0)
            size = json_size(job.input, job.plan, job.engine, job.result, job.error, logs) + 512
            self._final.put(job.id, (job, logs), size)
        return job

    def forget(self, job_ids) -> None:
        """Drop finished requests from the in-memory cache (their rows were deleted: --retention)."""
        for job_id in job_ids:
            self._final.pop(job_id, None)

    def position(self, job: Job) -> int:
        with self.read() as conn:
            return self._position(conn, job)

    def _position(self, conn, job: Job) -> int:
        """Rows ahead of ``job`` in the queue: higher priority first, then submit order. Two
        counts, each one range of the (status, priority, seq) index: with the OR of the two in
        one WHERE, SQLite scanned every queued row of this priority and above (3x slower at 18,000
        queued) and PostgreSQL every queued row."""
        r = requests.c
        higher = sa.select(sa.func.count()).where(r.status == QUEUED, r.priority > job.priority)
        older = sa.select(sa.func.count()).where(r.status == QUEUED, r.priority == job.priority, r.seq < job.seq)
        return conn.execute(sa.select(higher.scalar_subquery() + older.scalar_subquery())).scalar_one()

    def logs(self, job_id: str, after: int = 0) -> list[dict]:
        hit = self._final.get(job_id)
        if hit is not None:
            return [entry for entry in hit[1] if entry["seq"] > after]
        with self.read() as conn:
            return self._logs(conn, job_id, after)

    def _logs(self, conn, job_id: str, after: int) -> list[dict]:
        rows = conn.execute(
            sa.select(request_logs)
            .where(request_logs.c.request_id == job_id, request_logs.c.seq > after)
            .order_by(request_logs.c.seq)
        ).mappings()
        return [dict(r) for r in rows]

    def snapshot(self, job_id: str, logs_after: int | None = None) -> tuple[Job | None, int | None, list[dict] | None]:
        """One consistent read for a status answer: the job, its queue position while queued, and
        its log lines after ``logs_after`` (None: no logs wanted)."""
        hit = self._final.get(job_id)
        if hit is not None:
            job = hit[0]
            return job, None, None if logs_after is None else [e for e in hit[1] if e["seq"] > (logs_after or 0)]
        with self.read() as conn:
            job = self._remember(self._get(conn, job_id), conn)
            if job is None:
                return None, None, None
            if job.status == QUEUED:
                return job, self._position(conn, job), None
            return job, None, None if logs_after is None else self._logs(conn, job_id, logs_after)

    def history(self, key_id: str | None, limit: int = 20) -> list[Job]:
        """Recent requests, newest first. An input over ``HISTORY_INPUT_BYTES`` (stored whole by
        older versions) is not read: it comes back as ``{"omitted_bytes": size}``, so a listing
        of 200 such rows does not load gigabytes."""
        r = requests.c
        size = sa.func.length(sa.cast(r.input, sa.Text)).label("input_size")
        columns = [c for c in requests.c if c.name != "input"]
        with self.read() as conn:
            q = sa.select(*columns, size).order_by(r.seq.desc()).limit(limit)
            if key_id is not None:
                q = q.where(r.key_id == key_id)
            rows = [dict(row) for row in conn.execute(q).mappings()]
            small = [row["id"] for row in rows if (row["input_size"] or 0) <= HISTORY_INPUT_BYTES]
            inputs = dict(conn.execute(sa.select(r.id, r.input).where(r.id.in_(small))).all()) if small else {}
        jobs = []
        for row in rows:
            nbytes = row.pop("input_size") or 0
            jobs.append(Job(**row, input=inputs.get(row["id"], {"omitted_bytes": nbytes})))
        return jobs

    def ping(self) -> None:
        """Raises unless the database answers (health checks)."""
        with self.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def counts(self) -> dict[str, int]:
        with self.read() as conn:
            rows = conn.execute(
                sa.select(requests.c.status, sa.func.count()).group_by(requests.c.status)
            ).all()
            return {status: n for status, n in rows}

    # -- worker side -------------------------------------------------------------------------

    def claim(self, worker_id: str, lease_s: float, endpoints: list[str] | None = None) -> Job | None:
        r = requests.c
        now = time.time()
        # A request past its start deadline is never started, even before maintain() expires it
        # (an idle worker polls claim more often than maintain runs). A queued row's lease_until is
        # the end of its --faults queue_delay hold.
        pick = sa.select(r.seq).where(
            r.status == QUEUED, sa.or_(r.start_deadline.is_(None), r.start_deadline >= now),
            sa.or_(r.lease_until.is_(None), r.lease_until <= now),
        )
        if endpoints:
            pick = pick.where(r.endpoint_id.in_(endpoints))
        pick = pick.order_by(r.priority.desc(), r.seq).limit(1).with_for_update(skip_locked=True)
        with self.write() as conn:
            row = conn.execute(
                requests.update()
                .where(r.seq == pick.scalar_subquery(), r.status == QUEUED)
                .values(
                    status=RUNNING, worker_id=worker_id, attempts=r.attempts + 1,
                    lease_until=now + lease_s, started_at=now, progress=0.0,
                )
                .returning(*requests.c)  # the claimed row itself: no second read
            ).mappings().first()
            if row is not None and not self.sqlite:  # other processes' status answers (changes.QueueWatch)
                conn.exec_driver_sql(f"NOTIFY {QUEUE_CHANNEL}")
            return Job(**row) if row else None

    def _fence(self, job: Job):
        r = requests.c
        return sa.and_(
            r.id == job.id, r.worker_id == job.worker_id, r.attempts == job.attempts, r.status.in_(ACTIVE)
        )

    def heartbeat(
        self, job: Job, lease_s: float, progress: float | None = None, logs: list[tuple[float, str, str]] = ()
    ) -> str | None:
        """Extend the lease and flush progress and logs; returns the job's status, or None when
        the lease was lost (another worker owns the job now, or it ended)."""
        values = {"lease_until": time.time() + lease_s}
        if progress is not None:
            values["progress"] = progress
        with self.write() as conn:
            row = conn.execute(
                requests.update().where(self._fence(job)).values(**values).returning(requests.c.status)
            ).first()
            if row is None:
                return None
            if logs:
                conn.execute(
                    request_logs.insert(),
                    [{"request_id": job.id, "timestamp": t, "level": lvl, "message": m} for t, lvl, m in logs],
                )
            return row[0]

    def finish(
        self,
        job: Job,
        *,
        result: dict | None = None,
        failure: Failure | None = None,
        cancelled: bool = False,
        logs: list[tuple[float, str, str]] = (),
    ) -> bool:
        """Record the outcome of the worker's attempt (fenced). False: the attempt no longer owns it."""
        now = time.time()
        if cancelled:
            status, failure = CANCELED, failure or Failure.cancelled()
        else:
            status = FAILED if failure else SUCCEEDED
        values = dict(
            status=status, finished_at=now, lease_until=None,
            inference_time=now - job.started_at if job.started_at else None,
        )
        if status == SUCCEEDED:
            values.update(result=result, progress=1.0)
        else:
            values.update(failure.to_row())
        with self.write() as conn:
            done = conn.execute(requests.update().where(self._fence(job)).values(**values)).rowcount == 1
            if done:
                if logs:
                    conn.execute(
                        request_logs.insert(),
                        [{"request_id": job.id, "timestamp": t, "level": lvl, "message": m} for t, lvl, m in logs],
                    )
                outbox.add(conn, job.id)
            return done

    def release(self, job: Job, reason: str = "the worker is shutting down") -> bool:
        """Give a running job back to the queue (a worker shutting down cleanly, or out of disk);
        the attempt does not count against ``max_attempts``."""
        r = requests.c
        with self.write() as conn:
            n = conn.execute(
                requests.update().where(self._fence(job), r.status == RUNNING).values(
                    status=QUEUED, worker_id=None, lease_until=None, progress=0.0, attempts=r.attempts - 1,
                )
            ).rowcount
            if n:
                conn.execute(request_logs.insert().values(
                    request_id=job.id, timestamp=time.time(), level="INFO",
                    message=reason if "re-queued" in reason else f"{reason}; request re-queued",
                ))
            return n == 1

    # -- cancel, deadlines, leases -----------------------------------------------------------

    def cancel(self, job_id: str) -> str:
        """fal's answers: CANCELLATION_REQUESTED, ALREADY_COMPLETED or NOT_FOUND."""
        r = requests.c
        now = time.time()
        with self.write() as conn:
            job = self._get(conn, job_id)
            if job is None:
                return "NOT_FOUND"
            if job.terminal:
                return "ALREADY_COMPLETED"
            if job.status == QUEUED:
                n = conn.execute(
                    requests.update().where(r.id == job_id, r.status == QUEUED).values(
                        status=CANCELED, finished_at=now, **Failure.cancelled().to_row(),
                    )
                ).rowcount
                if n:
                    outbox.add(conn, job_id)
                    return "CANCELLATION_REQUESTED"
                job = self._get(conn, job_id)  # claimed meanwhile: cancel the running job below
            if job.status == RUNNING:
                conn.execute(requests.update().where(r.id == job_id, r.status == RUNNING).values(status=CANCELING))
            return "CANCELLATION_REQUESTED"

    def maintain(self, max_attempts: int) -> int:
        """Expire start deadlines, re-queue jobs whose worker vanished (lease expired), and fail
        those that lost their worker ``max_attempts`` times. Safe to run anywhere, any time."""
        from stillreel.jobs.maintenance import maintain

        return maintain(self, max_attempts)

    # -- webhook outbox (stillreel.jobs.outbox) -------------------------------------------------

    def outbox_claim(self, limit: int = 10, hold_s: float = 60.0) -> list[dict]:
        return outbox.claim(self, limit, hold_s)

    def outbox_done(self, seq: int, *, ok: bool, error: str | None, retry_at: float | None,
                    held_until: float | None = None) -> bool:
        return outbox.done(self, seq, ok=ok, error=error, retry_at=retry_at, held_until=held_until)

    def outbox(self, request_id: str) -> list[dict]:
        return outbox.rows(self, request_id)


class _Tx:
    def __init__(self, conn, lock=None, keep: bool = False):
        self.conn = conn
        self.lock = lock
        self.keep = keep

    def __enter__(self):
        if self.lock is not None:
            self.lock.acquire()
        try:
            self.tx = self.conn.begin()
        except BaseException:
            self._release()
            raise
        return self.conn

    def _release(self):
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.tx.commit()
            else:
                self.tx.rollback()
        finally:
            try:
                if not self.keep:
                    self.conn.close()
            finally:
                self._release()

