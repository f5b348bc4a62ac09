"""The store's upkeep: start deadlines and expired leases. Run by API housekeeping (every 0.5 s) and
by every worker (every second), whoever is alive: a lease left by a dead worker, or by one cut off
from the database, is re-queued by the first to come round."""

from __future__ import annotations

import time

import sqlalchemy as sa

from stillreel.errors import Failure
from stillreel.jobs import outbox
from stillreel.jobs.schema import ACTIVE, CANCELED, CANCELING, FAILED, QUEUED, TIMED_OUT, request_logs, requests


def maintain(store, max_attempts: int) -> int:
    """Expire start deadlines, re-queue jobs whose worker vanished (lease expired), and fail
    those that lost their worker ``max_attempts`` times; returns how many rows changed."""
    r = requests.c
    now = time.time()
    changed = 0
    with store.write() as conn:
        expired = conn.execute(
            sa.select(r.id).where(r.status == QUEUED, r.start_deadline.is_not(None), r.start_deadline < now)
        ).scalars().all()
        for job_id in expired:
            changed += conn.execute(
                requests.update().where(r.id == job_id, r.status == QUEUED).values(
                    status=TIMED_OUT, finished_at=now, **Failure.start_deadline_passed().to_row(),
                )
            ).rowcount
            outbox.add(conn, job_id)
        lost = conn.execute(
            sa.select(r.id, r.status, r.attempts).where(r.status.in_(ACTIVE), r.lease_until < now)
        ).all()
        for job_id, status, attempts in lost:
            fence = sa.and_(r.id == job_id, r.attempts == attempts, r.status == status)
            if status == CANCELING:
                values = dict(status=CANCELED, finished_at=now, **Failure.cancelled().to_row())
            elif attempts >= max_attempts:
                values = dict(status=FAILED, finished_at=now, **Failure.worker_lost(attempts).to_row())
            else:
                values = dict(status=QUEUED, worker_id=None, lease_until=None, progress=0.0)
            if conn.execute(requests.update().where(fence).values(**values)).rowcount:
                changed += 1
                conn.execute(request_logs.insert().values(
                    request_id=job_id, timestamp=now, level="WARN",
                    message="the worker stopped answering; "
                    + ("request re-queued" if values["status"] == QUEUED else "request ended"),
                ))
                if values["status"] != QUEUED:
                    outbox.add(conn, job_id)
    return changed
