"""What every router shares: the app's services and the caller's identity.

The app keeps its services on ``app.state``: ``settings`` (``stillreel.config.Settings``),
``store`` (``stillreel.jobs.store.JobStore``), ``storage`` (``stillreel.storage.Storage``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from stillreel.api import tokens
from stillreel.config import Settings


@dataclass(frozen=True)
class Caller:
    key_id: str | None  # None when auth is off


def settings(request: Request) -> Settings:
    return request.app.state.settings


def base_url(request: Request) -> str:
    """The server's public base URL, without a trailing slash.

    ``--public-url`` wins; otherwise the request's own scheme and Host, so that URLs handed back
    (status_url, file URLs) point where this caller reached the server.
    """
    configured = request.app.state.settings.public_url
    if configured:
        return configured.rstrip("/")
    proto = request.headers.get("x-forwarded-proto") or request.url.scheme
    host = request.headers.get("x-forwarded-host") or request.headers.get("host") or request.url.netloc
    return f"{proto}://{host}"


async def caller(request: Request) -> Caller:
    """FastAPI dependency: the authenticated caller, or 401 in fal's shape.

    Accepts ``Authorization: Key KEY_ID:SECRET`` (fal's scheme), ``Bearer`` tokens issued by
    ``/storage/auth/token`` (fal's CDN uploads use those), and on the status stream only a
    ``fal_jwt_token`` query parameter from ``POST /tokens/``. Async, and answered from the keys'
    short-lived cache when it can be, because status polls arrive at 10 Hz per client.
    """
    found = getattr(request.state, "caller", None)
    if found is not None:
        return found
    if not request.app.state.settings.auth:
        return Caller(None)
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    keys = request.app.state.keys
    key_id = None
    if scheme.lower() == "key" and credentials:
        key_id = keys.cached(credentials)
        if key_id is keys.MISSING:
            key_id = await run_in_threadpool(keys.verify, credentials)
    elif scheme.lower() == "bearer" and credentials:
        key_id = await run_in_threadpool(keys.verify_token, credentials)
    elif not header and "fal_jwt_token" in request.query_params and tokens.accepts_token(request.url.path):
        # fal's temporary token (POST /tokens/): what a browser streaming status with
        # connectionMode "client" sends instead of a key. Raises 401/403 itself.
        key_id = await tokens.caller_from_token(request, request.query_params["fal_jwt_token"])
    if key_id is None:
        raise HTTPException(
            status_code=401,
            detail="Missing or invalid API key: send 'Authorization: Key KEY_ID:SECRET'"
            if not header
            else "Invalid API key",
            headers={"WWW-Authenticate": "Key"},
        )
    request.state.caller = Caller(key_id)
    return request.state.caller
