"""How long stored files and finished requests live: fal's object lifecycle and ``--retention``.

fal's clients ask for a lifetime with ``{"expiration_duration_seconds": N}`` (fal-protocol.md §6):
``X-Fal-Object-Lifecycle`` on uploads (Python's CDN upload, JS's ``initiate`` call) and
``X-Fal-Object-Lifecycle-Preference`` on submits and sync runs, where it asks for the lifetime of
the request's outputs. Expiries are kept per file key in the job database (one small table beside
the job store's, created here, so that every replica and both storage backends share them); an
expired file answers 404 at once and is deleted by the next sweep.

Outputs are written by the workers, which know nothing of this: a submit records the wanted
lifetime per request, and the sweep turns it into file expiries (finished_at + N) once the request
has finished. ``--retention DAYS`` (``Settings.retention_s``) removes finished requests (their rows,
logs and webhook records) and stored files older than that.
"""

from __future__ import annotations

import json
import logging
import time

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from stillreel.jobs.schema import TERMINAL, create_schema, request_logs, requests, webhook_outbox
from stillreel.storage.naming import key_in_url

log = logging.getLogger("stillreel.lifecycle")
SWEEP_EVERY_S = 2.0  # expiries are checked when a file is served; the sweep only frees the space
BATCH = 500
HEADERS = ("x-fal-object-lifecycle", "x-fal-object-lifecycle-preference")

metadata = sa.MetaData()
object_expiry = sa.Table(
    "object_expiry",
    metadata,
    sa.Column("key", sa.String(600), primary_key=True),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)
output_lifetimes = sa.Table(
    "output_lifetimes",
    metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("seconds", sa.Float, nullable=False),
)


def requested_lifetime(headers, names=HEADERS) -> float | None:
    """``expiration_duration_seconds`` from the first lifecycle header present; None when absent
    or unreadable (fal's clients always send well-formed JSON; a stricter twin would only break apps)."""
    for name in names:
        raw = headers.get(name)
        if not raw:
            continue
        try:
            seconds = json.loads(raw).get("expiration_duration_seconds")
        except (ValueError, AttributeError):
            log.warning("ignoring an unreadable %s header: %r", name, raw[:200])
            return None
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0:
            return float(seconds)
        return None
    return None


def _urls(value) -> list[str]:
    """Every ``url`` string in an output (``{"video": {"url": …}}`` and any nested files)."""
    if isinstance(value, dict):
        found = [value["url"]] if isinstance(value.get("url"), str) else []
        return found + [u for k, v in value.items() if k != "url" for u in _urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in _urls(v)]
    return []


class Lifecycle:
    def __init__(self, store, storage, retention_s: float | None = None):
        self.store = store
        self.storage = storage
        self.retention_s = retention_s
        self._last_sweep = 0.0
        # Called with the ids of deleted requests, so in-process caches of finished ones let go.
        self.on_retire: list = [store.forget]
        self._create()

    def _create(self) -> None:
        create_schema(self.store.db, metadata)  # the job store's lock: replicas may start together

    def _upsert(self, table, values: dict, key: str):
        insert = (sqlite_insert if self.store.sqlite else pg_insert)(table).values(**values)
        return insert.on_conflict_do_update(index_elements=[key], set_={k: v for k, v in values.items() if k != key})

    # -- recording ---------------------------------------------------------------------------

    def expire_in(self, key: str, seconds: float, now: float | None = None) -> None:
        expires_at = (time.time() if now is None else now) + seconds
        with self.store.write() as conn:
            conn.execute(self._upsert(object_expiry, {"key": key, "expires_at": expires_at}, "key"))

    def outputs_expire_in(self, request_id: str, seconds: float) -> None:
        with self.store.write() as conn:
            conn.execute(self._upsert(output_lifetimes, {"request_id": request_id, "seconds": seconds}, "request_id"))

    def expired(self, key: str, now: float | None = None) -> bool:
        with self.store.read() as conn:
            at = conn.execute(sa.select(object_expiry.c.expires_at).where(object_expiry.c.key == key)).scalar()
        return at is not None and at <= (time.time() if now is None else now)

    # -- sweeping ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Called from the API's housekeeping loop (every 0.5 s): sweeps every ``SWEEP_EVERY_S``."""
        if time.monotonic() - self._last_sweep >= SWEEP_EVERY_S:
            self._last_sweep = time.monotonic()
            self.sweep()

    def sweep(self, now: float | None = None) -> dict[str, int]:
        now = time.time() if now is None else now
        done = {"outputs": self._resolve_outputs(), "expired": self._delete_expired(now)}
        if self.retention_s:
            done["requests"] = self._retire_requests(now - self.retention_s)
            done["files"] = self._retire_files(self.retention_s, now)
        return done

    def _resolve_outputs(self) -> int:
        """Finished requests that asked for an output lifetime: their files expire finished_at + N."""
        r, o = requests.c, output_lifetimes.c
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(o.request_id, o.seconds, r.result, r.finished_at, r.status)
                .select_from(output_lifetimes.outerjoin(requests, r.id == o.request_id))
                .where(sa.or_(r.status.in_(TERMINAL), r.id.is_(None))).limit(BATCH)
            ).all()
        for request_id, seconds, result, finished_at, status in rows:
            for url in _urls(result or {}):
                key = key_in_url(url)
                if key is not None:
                    self.expire_in(key, seconds, now=finished_at or time.time())
            with self.store.write() as conn:
                conn.execute(output_lifetimes.delete().where(o.request_id == request_id))
        return len(rows)

    def _delete_expired(self, now: float) -> int:
        with self.store.read() as conn:
            keys = conn.execute(
                sa.select(object_expiry.c.key).where(object_expiry.c.expires_at <= now).limit(BATCH)
            ).scalars().all()
        for key in keys:
            self.storage.delete(key)
        if keys:
            with self.store.write() as conn:
                conn.execute(object_expiry.delete().where(object_expiry.c.key.in_(keys)))
        return len(keys)

    def _retire_requests(self, cutoff: float) -> int:
        r = requests.c
        with self.store.read() as conn:
            ids = conn.execute(
                sa.select(r.id).where(r.status.in_(TERMINAL), r.finished_at < cutoff).limit(BATCH)
            ).scalars().all()
        if ids:
            with self.store.write() as conn:
                conn.execute(request_logs.delete().where(request_logs.c.request_id.in_(ids)))
                conn.execute(webhook_outbox.delete().where(webhook_outbox.c.request_id.in_(ids)))
                conn.execute(output_lifetimes.delete().where(output_lifetimes.c.request_id.in_(ids)))
                # Re-checked inside the write: terminal rows never change, so this is the same set.
                conn.execute(requests.delete().where(r.id.in_(ids), r.status.in_(TERMINAL)))
            for forget in list(self.on_retire):
                forget(ids)
        return len(ids)

    def _retire_files(self, older_than_s: float, now: float) -> int:
        keys = list(self.storage.old_files(older_than_s, now=now))
        for key in keys:
            self.storage.delete(key)
        for start in range(0, len(keys), BATCH):
            with self.store.write() as conn:
                conn.execute(object_expiry.delete().where(object_expiry.c.key.in_(keys[start:start + BATCH])))
        return len(keys)


def sweep_quietly(lifecycle: Lifecycle | None) -> None:
    """The housekeeping loop's call: a failed sweep is logged and retried on the next tick."""
    if lifecycle is None:
        return
    try:
        lifecycle.tick()
    except Exception:
        log.exception("lifecycle sweep failed")
