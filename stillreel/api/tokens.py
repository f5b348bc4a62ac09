"""fal's temporary tokens: ``POST /tokens/`` and the ``fal_jwt_token`` query parameter.

``@fal-ai/client`` asks for one (``{"allowed_apps": ["kling-video"], "token_expiration": 120}``,
answered with the token as a bare JSON string) when a status stream runs with
``connectionMode: "client"``: the browser then opens
``…/requests/{id}/status/stream?fal_jwt_token=…`` itself, without the key. A token is an HS256 JWT
(``sub`` = the key id, ``allowed_apps``, ``exp``) signed with a server secret kept in the job
database, so every API replica accepts every other's tokens. It is accepted only where fal's
clients send it (the status stream; realtime is not offered), only for its apps, until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:  # annotations only: services imports the whole job side
    from stillreel.api.services import Services

MAX_EXPIRATION_S = 24 * 3600
DEFAULT_EXPIRATION_S = 120  # @fal-ai/client's TOKEN_EXPIRATION_SECONDS
_HEADER = {"alg": "HS256", "typ": "JWT"}
# Routes a token may authenticate: the SSE status stream (``…/requests/{id}/status/stream``).
_TOKEN_ROUTES = ("/status/stream",)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(secret: bytes, key_id: str | None, apps: list[str], seconds: int, now: float | None = None) -> str:
    now = int(time.time() if now is None else now)
    claims = {"sub": key_id or "-", "allowed_apps": apps, "iat": now, "exp": now + seconds}
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def claims_of(secret: bytes, token: str, now: float | None = None) -> dict | None:
    """The token's claims if it is ours, intact and unexpired; else None."""
    try:
        header, payload, signature = token.split(".")
        expected = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature)):
            return None
        if json.loads(_unb64(header)).get("alg") != "HS256":
            return None
        claims = json.loads(_unb64(payload))
    except (ValueError, AttributeError):
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
        return None
    return claims if claims["exp"] > (time.time() if now is None else now) else None


def app_of(path: str) -> str | None:
    """``owner/alias`` of a request path (``[/queue]/{owner}/{alias}[/…]/requests/…``)."""
    parts = path.strip("/").split("/")
    if parts and parts[0] == "queue":
        parts = parts[1:]
    if parts and parts[0] in ("workflows", "comfy"):  # fal's namespaced ids
        parts = parts[1:]
    return "/".join(parts[:2]) if len(parts) >= 2 else None


def accepts_token(path: str) -> bool:
    return path.rstrip("/").endswith(_TOKEN_ROUTES)


async def caller_from_token(services: Services, path: str, token: str) -> str | None:
    """The key id a ``fal_jwt_token`` stands for on the route at ``path``; raises fal-shaped 401/403."""
    secret = await run_in_threadpool(lambda: services.jwt_secret)  # may create it: not on the loop
    claims = claims_of(secret, token)
    if claims is None:
        raise HTTPException(401, "Invalid or expired token", headers={"WWW-Authenticate": "Bearer"})
    app = app_of(path) or ""
    allowed = claims.get("allowed_apps") or []
    # The JS client lists bare aliases ("kling-video"); "owner/alias" is accepted too.
    if app not in allowed and app.split("/")[-1] not in allowed:
        raise HTTPException(403, f"This token is not allowed to access {app}")
    key_id = claims.get("sub")
    if key_id in (None, "-"):  # made by a server without auth: grants nothing once auth is on
        raise HTTPException(401, "Invalid or expired token", headers={"WWW-Authenticate": "Bearer"})
    # A token dies with its key: revoking the key revokes the tokens made from it.
    if not await run_in_threadpool(services.keys.active, key_id):
        raise HTTPException(401, "Invalid or expired token", headers={"WWW-Authenticate": "Bearer"})
    return key_id
