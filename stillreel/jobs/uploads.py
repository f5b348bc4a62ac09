"""Output uploads in flight, so that no stored video outlives the attempt that made it.

A worker stores a request's video and then records it with a fenced finish. Between the two it can
lose the request (its lease ran out while its link was down) or die (kill -9, a lost machine): the
file would stay in storage with nothing pointing at it. So the worker notes the key first
(``note``), and forgets it once the finish recorded the file or it deleted the file itself
(``settle``). ``sweep`` deletes the files of notes whose attempt can no longer finish: the request
ended with another file, or a later attempt took it over; run by the API's housekeeping.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from stillreel.jobs.schema import ACTIVE, QUEUED, output_uploads, requests

log = logging.getLogger("stillreel.uploads")
GRACE_S = 30.0  # a note younger than this is left alone: its upload may still be under way


def note(store, job_id: str, attempt: int, key: str) -> None:
    with store.write() as conn:
        conn.execute(output_uploads.insert().values(key=key, request_id=job_id, attempt=attempt,
                                                    created_at=time.time()))


def settle(store, key: str) -> None:
    with store.write() as conn:
        conn.execute(output_uploads.delete().where(output_uploads.c.key == key))


def orphans(store, now: float | None = None, grace_s: float = GRACE_S) -> list[str]:
    """Keys of noted uploads that nothing will record: their request is gone, ended (with another
    file or none), or has moved on to a later attempt."""
    now = time.time() if now is None else now
    u, r = output_uploads.c, requests.c
    with store.read() as conn:
        rows = conn.execute(
            sa.select(u.key, u.attempt, r.status, r.attempts, r.result)
            .select_from(output_uploads.outerjoin(requests, r.id == u.request_id))
            .where(u.created_at < now - grace_s)
        ).all()
    found = []
    for key, attempt, status, attempts, result in rows:
        if status is not None and (status in ACTIVE or status == QUEUED) and attempts == attempt:
            continue  # that attempt is still running (or was handed back): it may yet finish
        url = ((result or {}).get("video") or {}).get("url") or ""
        if url.endswith("/" + key) or url == key:
            continue  # recorded: the finish committed and only the settle was lost
        found.append(key)
    return found


def sweep(store, storage, grace_s: float = GRACE_S) -> int:
    """Delete orphan uploads; returns how many. Safe beside workers and other sweepers."""
    gone = 0
    for key in orphans(store, grace_s=grace_s):
        try:
            storage.delete(key)
        except Exception:  # the storage is away: the note stays and the next sweep tries again
            log.warning("could not delete orphan upload %s; will retry", key)
            continue
        settle(store, key)
        gone += 1
    if gone:
        log.info("deleted %d orphan upload(s)", gone)
    return gone
