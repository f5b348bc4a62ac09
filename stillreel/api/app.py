"""The ASGI app: fal's routes, storage, the playground, and (embedded mode) the workers."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stillreel import __version__
from stillreel.api import deps, openapi, playground, queue, storage, token_route, unavailable
from stillreel.api.fastpath import StillreelAPI
from stillreel.api.proxy import ProxyMiddleware
from stillreel.config import Settings
from stillreel.endpoints.registry import ENDPOINTS
from stillreel.engines import capabilities
from stillreel.jobs.changes import Changes, QueueWatch
from stillreel.jobs.keys import Keys
from stillreel.jobs.outage import OutageLog
from stillreel.jobs.store import JobStore
from stillreel.jobs.webhooks import Dispatcher, Signer
from stillreel.jobs.worker import Worker
from stillreel.storage import open_storage
from stillreel.storage.lifecycle import Lifecycle, sweep_quietly

log = logging.getLogger("stillreel")
SWEEP_EVERY_S = 3600.0
ABANDONED_UPLOAD_S = 24 * 3600.0


class Services:
    """Everything a server process runs beside the HTTP routes."""

    def __init__(self, settings: Settings):
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(settings.db_url)
        self.storage = open_storage(settings)
        self.keys = Keys(self.store)
        self.lifecycle = Lifecycle(self.store, self.storage, settings.retention_s)
        self.signer = Signer(self.store)
        self.changes = Changes()
        self.wake = threading.Event()
        self.capabilities = {eid: capabilities(settings.engine_for(eid)) for eid in ENDPOINTS}
        self.dispatcher = Dispatcher(self.store, self.signer, settings.webhook_backoff_s, settings.webhook_timeout_s,
                                     allow_private=settings.limits.allow_private_urls,
                                     concurrency=settings.webhook_concurrency)
        self.workers = [
            Worker(settings, self.store, self.storage, wake=self.wake, on_change=self.changes.notify)
            for _ in range(settings.workers)
        ]
        # Other processes' submits and claims: this process's workers wake at once, and its status
        # fast path re-reads queued answers (API-only replicas too), not at the next poll / 0.1 s.
        self.queue_watch = QueueWatch(self.store, self.changes, [self.wake])
        self._threads: list[threading.Thread] = []
        self._worker_threads: dict[int, threading.Thread] = {}
        self._stop = threading.Event()
        self.started = False

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
        last_sweep = 0.0
        outage = OutageLog(log, "housekeeping")
        while not self._stop.wait(0.5):
            self._supervise()
            try:
                # Every 0.5 s whatever the workers are doing: a busy worker must not make a start
                # deadline (X-Fal-Request-Timeout) late. maintain() is safe beside the workers' own.
                if self.store.maintain(self.settings.max_attempts):
                    self.changes.notify(None)
                sweep_quietly(self.lifecycle)  # object lifecycle and --retention
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


def create_app(settings: Settings, *, run_services: bool = True) -> FastAPI:
    services = Services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if run_services:
            services.start()
        else:
            services.queue_watch.start()
        yield
        services.stop()

    app = StillreelAPI(title="stillreel", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.services = services
    app.state.settings = settings
    app.state.store = services.store
    app.state.storage = services.storage
    app.state.keys = services.keys
    app.state.lifecycle = services.lifecycle
    app.state.changes = services.changes
    app.state.wake = services.wake
    app.state.capabilities = services.capabilities

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    unavailable.install(app)

    @app.get("/healthz")
    def healthz():
        """Liveness: 200 when the database answers and every worker of this process is live
        (its thread runs and its loop came round recently), else 503 with the same body."""
        ok, body = services.health()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/readyz")
    def readyz():
        """Readiness for load balancers: 503 while the database is unreachable (this replica
        could only answer 503s); workers do not matter here, API replicas may run none."""
        try:
            services.store.ping()
        except Exception as exc:
            return JSONResponse({"ready": False, "detail": f"the job database is unreachable ({type(exc).__name__})"},
                                status_code=503, headers={"Retry-After": str(unavailable.DB_RETRY_AFTER_S)})
        return {"ready": True}

    @app.get("/.well-known/jwks.json")
    def jwks():
        return services.signer.jwks()

    app.include_router(storage.router)
    app.include_router(token_route.router)
    app.include_router(openapi.router)
    app.include_router(queue.router)
    app.include_router(playground.router)

    # fal's run host and the queue routes without the /queue prefix share the root; registered
    # last so that every named route above wins.
    @app.get("/{path:path}")
    async def request_get(path: str, request: Request):
        if queue.split_request_path(path) is None:
            raise HTTPException(404, "Not Found")
        return await queue.request_get(path, request, await deps.caller(request))

    @app.put("/{path:path}")
    async def request_put(path: str, request: Request):
        if queue.split_request_path(path) is None:
            raise HTTPException(404, "Not Found")
        return await queue.request_cancel(path, request, await deps.caller(request))

    @app.post("/{endpoint_id:path}")
    async def run(endpoint_id: str, request: Request, who: deps.Caller = Depends(deps.caller)):
        if endpoint_id.endswith("/stream"):
            raise HTTPException(404, "streaming runs are not offered by the Kling image-to-video endpoints")
        return await queue.run_sync(endpoint_id, request, who)

    app.add_middleware(ProxyMiddleware)
    app.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"],
        expose_headers=["x-fal-request-id", "x-fal-error-type", "x-fal-request-timeout-type", "Content-Range", "Accept-Ranges", "ETag"],
        max_age=600,
    )
    return app
