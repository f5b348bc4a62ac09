"""The webhook outbox: the delivery owed for a finished request, and its attempts.

A row is added in the same transaction as the request's terminal state (``add``), so a request
never ends without its webhook being owed; ``jobs.webhooks.Dispatcher`` takes due rows
(``claim``) and records each attempt (``done``). ``JobStore`` keeps ``outbox_claim`` /
``outbox_done`` / ``outbox`` as the dispatcher's and the tests' entry points.
"""

from __future__ import annotations

import json
import time

import sqlalchemy as sa

from stillreel.errors import Failure
from stillreel.jobs.schema import SUCCEEDED, Job, requests, webhook_outbox


def webhook_body(job: Job) -> dict:
    """fal's webhook body for a finished request."""
    body = {"request_id": job.id, "gateway_request_id": job.id}
    if job.status == SUCCEEDED:
        body.update(status="OK", payload=job.result)
        return body
    failure = Failure.from_row(job)
    body.update(
        status="ERROR",
        error=f"Invalid status code: {job.error_status}",
        error_type=job.error_type,
        payload=failure.webhook_payload() if failure else None,
    )
    return body


def add(conn, job_id: str) -> None:
    """Owe ``job_id``'s webhook, if it has one; inside the transaction that ended it."""
    row = conn.execute(sa.select(requests).where(requests.c.id == job_id)).mappings().first()
    if row is None or not row["webhook_url"]:
        return
    job = Job(**row)
    conn.execute(webhook_outbox.insert().values(
        request_id=job.id, url=job.webhook_url, body=json.dumps(webhook_body(job)),
        attempts=0, next_attempt_at=time.time(), state="pending",
    ))


def claim(store, limit: int = 10, hold_s: float = 60.0) -> list[dict]:
    """Take due deliveries; each is held for ``hold_s`` so that one dispatcher sends it.

    The held-until time (the rows' new ``next_attempt_at``) is the claim's token for ``done``.
    Ties go to the older row, so rows due at once are taken in turn."""
    o = webhook_outbox.c
    now = time.time()
    with store.write() as conn:
        pick = (
            sa.select(o.seq).where(o.state == "pending", o.next_attempt_at <= now)
            .order_by(o.next_attempt_at, o.seq).limit(limit).with_for_update(skip_locked=True)
        )
        seqs = conn.execute(pick).scalars().all()
        if not seqs:
            return []
        conn.execute(webhook_outbox.update().where(o.seq.in_(seqs)).values(next_attempt_at=now + hold_s))
        return [dict(r) for r in conn.execute(sa.select(webhook_outbox).where(o.seq.in_(seqs))).mappings()]


def done(store, seq: int, *, ok: bool, error: str | None, retry_at: float | None,
         held_until: float | None = None) -> bool:
    """Record an attempt. With ``held_until`` (the claim's token) only while that claim still
    holds the row: a dispatcher whose claim lapsed and was taken over records nothing."""
    o = webhook_outbox.c
    fence = o.seq == seq
    if held_until is not None:
        fence = sa.and_(fence, o.state == "pending", o.next_attempt_at == held_until)
    values = {"attempts": o.attempts + 1, "last_error": error}
    if ok:
        values.update(state="delivered", delivered_at=time.time())
    elif retry_at is None:
        values.update(state="failed")
    else:
        values.update(next_attempt_at=retry_at)
    with store.write() as conn:
        return bool(conn.execute(webhook_outbox.update().where(fence).values(**values)).rowcount)


def rows(store, request_id: str) -> list[dict]:
    """Every delivery owed for ``request_id`` (tests, operators)."""
    with store.read() as conn:
        q = sa.select(webhook_outbox).where(webhook_outbox.c.request_id == request_id)
        return [dict(r) for r in conn.execute(q).mappings()]
