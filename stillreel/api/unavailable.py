"""fal-shaped answers for outages: the database away, the disk full.

fal's clients retry a 503 (and honour ``Retry-After``), so a PostgreSQL restart or a full disk costs
callers a short wait instead of an error; a bare 500 would look like a bug in the request. Messages
never carry the server's paths or the driver's text (both leak internals).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from stillreel.jobs.outage import OutageLog, is_db_outage, is_disk_full

log = logging.getLogger("stillreel")
DB_RETRY_AFTER_S = 2
DISK_RETRY_AFTER_S = 30
# Requests do not see the recovery, so an outage counts as over after a quiet minute.
_outage = OutageLog(log, "API", quiet_s=60.0)


def _is_upload(path: str, method: str) -> bool:
    return method in ("POST", "PUT") and path.startswith(("/files/", "/storage/upload"))


def outage_response(exc: BaseException, path: str = "", method: str = "GET") -> JSONResponse | None:
    """The answer for an outage, or None when ``exc`` is not one."""
    if is_disk_full(exc):
        _outage.failed(exc)
        if _is_upload(path, method):  # WebDAV's "insufficient storage": this file does not fit
            return JSONResponse({"detail": "Insufficient storage: the server has no space left for this file"},
                                status_code=507, headers={"Retry-After": str(DISK_RETRY_AFTER_S)})
        return JSONResponse({"detail": "The server is out of disk space; try again later"}, status_code=503,
                            headers={"Retry-After": str(DISK_RETRY_AFTER_S), "X-Fal-Error-Type": "service_unavailable"})
    if is_db_outage(exc):
        _outage.failed(exc)
        return JSONResponse({"detail": "The job database is unavailable; try again shortly"}, status_code=503,
                            headers={"Retry-After": str(DB_RETRY_AFTER_S), "X-Fal-Error-Type": "service_unavailable"})
    return None


def install(app) -> None:
    """Exception handlers: outages → 503/507 with Retry-After; any other database or OS error →
    a 500 in fal's shape (logged with its traceback), never Starlette's plain-text one."""
    import sqlalchemy.exc as sa_exc

    async def handler(request: Request, exc: Exception):
        answer = outage_response(exc, request.url.path, request.method)
        if answer is not None:
            return answer
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "Internal Server Error"}, status_code=500)

    app.add_exception_handler(sa_exc.SQLAlchemyError, handler)
    app.add_exception_handler(OSError, handler)
