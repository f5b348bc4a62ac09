"""``Services``: everything one server process runs beside its HTTP routes, built once.

``create_app`` builds one ``Services`` and keeps it as ``app.state.services``, the app's only state
attribute; routes receive it by dependency injection (``deps.services`` and the ``Annotated``
aliases in ``stillreel.api.deps``), never by reading ``app.state`` attributes by name. Tests build
the same object (``tests/storage_helpers.py``), so the wiring they test is the app's.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cached_property

from stillreel import __version__
from stillreel.config import Settings
from stillreel.endpoints.registry import ENDPOINTS
from stillreel.engines import capabilities
from stillreel.engines.base import Capabilities
from stillreel.jobs.changes import Changes, QueueWatch, StreamFeed
from stillreel.jobs.keys import Keys, secret_bytes, server_secret
from stillreel.jobs.outage import OutageLog
from stillreel.jobs import uploads
from stillreel.jobs.store import JobStore
from stillreel.jobs.webhooks import Dispatcher, Signer
from stillreel.jobs.worker import Worker
from stillreel.storage import Storage, open_storage
from stillreel.storage.lifecycle import Lifecycle, sweep_quietly

log = logging.getLogger("stillreel")
ORPHAN_SWEEP_S = 5.0
SWEEP_EVERY_S = 3600.0
ABANDONED_UPLOAD_S = 24 * 3600.0


class Services:
    """Everything a server process runs beside the HTTP routes."""

    def __init__(self, settings: Settings, *, storage: Storage | None = None):
        """``storage``: a storage of the caller's instead of the one ``settings`` names (tests)."""
        self.settings: Settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store: JobStore = JobStore(settings.db_url)
        self.storage: Storage = storage if storage is not None else open_storage(settings)
        self.keys: Keys = Keys(self.store)
        self.lifecycle: Lifecycle = Lifecycle(self.store, self.storage, settings.retention_s)
        self.signer: Signer = Signer(self.store)
        self.changes: Changes = Changes()  # in-process change notices: workers → status streams
        self.wake: threading.Event = threading.Event()  # set on submit/cancel: idle workers poll now
        # What each endpoint's bound engine can do, read once: submit checks every request against it.
        self.capabilities: dict[str, Capabilities] = {
            eid: capabilities(settings.engine_for(eid)) for eid in ENDPOINTS
        }
        self.dispatcher: Dispatcher = Dispatcher(
            self.store, self.signer, settings.webhook_backoff_s, settings.webhook_timeout_s,
            allow_private=settings.limits.allow_private_urls, concurrency=settings.webhook_concurrency,
        )
        # The open SSE status streams (made here, used on the event loop only).
        self.stream_feed: StreamFeed = StreamFeed(self.changes, self.store, settings.limits.max_streams_per_key)
        self.workers: list[Worker] = [
            Worker(settings, self.store, self.storage, wake=self.wake, on_change=self.changes.notify)
            for _ in range(settings.workers)
        ]
        # Other processes' submits and claims: this process's workers wake at once, and its status
        # fast path re-reads queued answers (API-only replicas too), not at the next poll / 0.1 s.
        self.queue_watch: QueueWatch = QueueWatch(self.store, self.changes, [self.wake])
        self._threads: list[threading.Thread] = []
        self._worker_threads: dict[int, threading.Thread] = {}
        self._stop = threading.Event()
        self.started = False

    # Secrets kept in the job database, shared by every API replica: read on first use (in the
    # thread pool: it may create the row), not at start-up, so an app that never signs an upload
    # or a token never touches them.

    @cached_property
    def upload_secret(self) -> bytes:
        """The HMAC key of upload grants (signed upload URLs)."""
        return secret_bytes(server_secret(self.store, "upload_url"))

    @cached_property
    def jwt_secret(self) -> bytes:
        """The HS256 key of fal's temporary tokens (``POST /tokens/``, ``fal_jwt_token``)."""
        return secret_bytes(server_secret(self.store, "fal_jwt_token"))

    def start(self) -> None:
        for worker in self.workers:
            self._start_worker(worker)
        self.queue_watch.start()
        self._spawn(self.dispatcher.run, "stillreel-webhooks")
        self._spawn(self._housekeeping, "stillreel-housekeeping")
        self.started = True

    def _spawn(self, target, name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def _start_worker(self, worker: Worker) -> None:
        self._worker_threads[id(worker)] = self._spawn(worker.run, "stillreel-worker")

    def _supervise(self) -> None:
        """A worker thread never returns before stop(); if one died anyway (a bug, an error that
        is not an Exception), start it again rather than serve with fewer workers than /healthz
        would claim."""
        for worker in self.workers:
            thread = self._worker_threads.get(id(worker))
            if thread is not None and not thread.is_alive() and not self._stop.is_set():
                log.error("worker %s died; restarting it", worker.id)
                self._threads.remove(thread)
                self._start_worker(worker)

    def health(self) -> tuple[bool, dict]:
        """(healthy, body) for /healthz: the database answers and every worker is live."""
        body: dict = {"version": __version__}
        try:
            body["queue"] = self.store.counts()
            body["database"] = "ok"
        except Exception as exc:
            body["database"] = f"unreachable ({type(exc).__name__})"
        live = sum(w.live() for w in self.workers) if self.started else 0
        configured = len(self.workers) if self.started else 0
        body.update(workers=live, workers_configured=configured)
        ok = body["database"] == "ok" and live == configured
        body["ok"] = ok
        return ok, body

    def _housekeeping(self) -> None:
        last_sweep = last_orphans = 0.0
        outage = OutageLog(log, "housekeeping")
        while not self._stop.wait(0.5):
            self._supervise()
            try:
                # Every 0.5 s whatever the workers are doing: a busy worker must not make a start
                # deadline (X-Fal-Request-Timeout) late. maintain() is safe beside the workers' own.
                if self.store.maintain(self.settings.max_attempts):
                    self.changes.notify(None)
                sweep_quietly(self.lifecycle)  # object lifecycle and --retention
                self.keys.watch_revocations()  # a key revoked elsewhere stops working here too
                if time.monotonic() - last_orphans > ORPHAN_SWEEP_S:
                    last_orphans = time.monotonic()
                    uploads.sweep(self.store, self.storage)  # videos no attempt will record
                if time.monotonic() - last_sweep > SWEEP_EVERY_S:
                    last_sweep = time.monotonic()
                    self.storage.sweep(ABANDONED_UPLOAD_S)  # half-finished multipart uploads
            except Exception as exc:  # the database is away: once per outage, not every 0.5 s
                outage.failed(exc)
            else:
                outage.ok()

    def stop(self) -> None:
        self._stop.set()
        for worker in self.workers:
            worker.stop()
        self.dispatcher.stop()
        self.queue_watch.stop()
        for thread in self._threads:
            thread.join(15)
        self.store.close()
