"""What every router shares: the app's ``Services`` and the caller's identity.

The app keeps one ``Services`` (``stillreel.api.services``) as ``app.state.services``; routes take
it as a dependency (``ServicesDep``), and helpers that receive the request call ``services(request)``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from stillreel.api import tokens
from stillreel.api.services import Services
from stillreel.config import Settings


UPLOAD_PATH_PREFIX = "/files/"  # the upload routes (fal's CDN); the only ones a Bearer upload token opens


@dataclass(frozen=True)
class Caller:
    key_id: str | None  # None when auth is off


def services(request: Request) -> Services:
    """FastAPI dependency: the app's one ``Services``, built by ``create_app``."""
    return request.app.state.services


def settings(request: Request) -> Settings:
    return services(request).settings


def base_url(request: Request) -> str:
    """The server's public base URL, without a trailing slash.

    ``--public-url`` wins; otherwise the request's own scheme and Host, so that URLs handed back
    (status_url, file URLs) point where this caller reached the server. ``X-Forwarded-Proto`` /
    ``-Host`` count only from a peer in ``--forwarded-allow-ips``: believed from anyone, they let a
    caller make the server hand out URLs (webhook bodies, file URLs) pointing at a host of theirs.
    """
    base = scope_base_url(services(request).settings, request.scope)
    if base is None:  # no Host header (HTTP/1.0): the address the server was reached at
        base = f"{request.url.scheme}://{request.url.netloc}"
    return base


def fal_headers(scope) -> dict[str, str]:
    """The request's ``x-fal-*`` headers, the first of each name, in one pass over the raw headers
    (Starlette's ``Headers.get`` scans them all and raises inside for every absent name)."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name.startswith(b"x-fal-"):
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def scope_base_url(settings: Settings, scope) -> str | None:
    """``base_url`` from the ASGI scope alone, in one pass over the raw headers (the status and
    submit fast paths have no ``Request``); None when there is no Host header to build it from."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = proto = fwd_host = None
    for name, value in scope["headers"]:
        if name == b"host":
            host = host or value
        elif name == b"x-forwarded-proto":
            proto = proto or value
        elif name == b"x-forwarded-host":
            fwd_host = fwd_host or value
    if (proto or fwd_host) and not trusts_forwarded(settings, scope.get("client")):
        proto = fwd_host = None
    netloc = fwd_host or host
    if not netloc:
        return None
    scheme = proto.decode("latin-1") if proto else scope.get("scheme", "http")
    return f"{scheme.split(',')[0].strip()}://{netloc.decode('latin-1').split(',')[0].strip()}"


@lru_cache(maxsize=4096)
def _allowed(allow: tuple[str, ...], peer: str) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:  # a unix socket path: a local proxy
        return "unix" in allow
    for item in allow:
        try:
            if address in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


def trusts_forwarded(settings: Settings, client) -> bool:
    """Whether the peer ``client`` (the ASGI scope's ``(host, port)``) may set X-Forwarded-*."""
    allow = settings.forwarded_allow_ips
    if not allow:
        return False
    if "*" in allow:
        return True
    return bool(client) and _allowed(tuple(allow), str(client[0]))


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
    app_services = services(request)
    if not app_services.settings.auth:
        return Caller(None)
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    keys = app_services.keys
    key_id = None
    if scheme.lower() == "key" and credentials:
        key_id = keys.cached(credentials)
        if key_id is keys.MISSING:
            key_id = await run_in_threadpool(keys.verify, credentials)
    elif scheme.lower() == "bearer" and credentials:
        # An upload token (POST /storage/auth/token) is fal's CDN credential: it uploads files and
        # nothing else, so a leaked one cannot submit, read results or cancel.
        if request.url.path.startswith(UPLOAD_PATH_PREFIX):
            key_id = await run_in_threadpool(keys.verify_token, credentials)
    elif not header and "fal_jwt_token" in request.query_params and tokens.accepts_token(request.url.path):
        # fal's temporary token (POST /tokens/): what a browser streaming status with
        # connectionMode "client" sends instead of a key. Raises 401/403 itself.
        key_id = await tokens.caller_from_token(app_services, request.url.path, request.query_params["fal_jwt_token"])
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


ServicesDep = Annotated[Services, Depends(services)]
CallerDep = Annotated[Caller, Depends(caller)]
