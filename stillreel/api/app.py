"""The ASGI app: fal's routes, storage, the playground, and (embedded mode) the workers."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stillreel import __version__
from stillreel.api import deps, openapi, playground, queue, storage, token_route, unavailable
from stillreel.api.fastpath import StillreelAPI
from stillreel.api.proxy import ProxyMiddleware
from stillreel.api.services import Services
from stillreel.config import Settings
from stillreel.errors import InputError, StillreelError


def error_response(exc: StillreelError) -> JSONResponse:
    """A raised stillreel error in fal's shape: 422 ``{"detail": [{loc, msg, type}]}`` for bad input,
    ``{"detail": "…", "error_type": "…"}`` with the error's status otherwise (``Failure.body``)."""
    if isinstance(exc, InputError):
        return JSONResponse({"detail": exc.detail}, status_code=422)
    return JSONResponse(exc.failure().body(), status_code=exc.status)


def create_app(settings: Settings, *, run_services: bool = True, services: Services | None = None) -> FastAPI:
    """The app, with its one ``Services`` (built here unless given: tests may build their own)."""
    services = services or Services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if run_services:
            services.start()
        else:
            services.queue_watch.start()
        yield
        services.stop()

    app = StillreelAPI(title="stillreel", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.services = services  # the only state attribute: routes take it through deps.services

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(StillreelError)
    async def stillreel_error(request: Request, exc: StillreelError):
        return error_response(exc)

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
    async def run(endpoint_id: str, request: Request, who: deps.CallerDep):
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
