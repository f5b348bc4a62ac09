"""``POST /tokens/``: fal's temporary JWT for browsers (``fal_jwt_token``); the token logic is in
``stillreel.api.tokens``, apart from the route so that ``deps`` (which accepts the tokens) and this
route (which needs the caller) do not import each other."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from stillreel.api import deps, tokens
from stillreel.errors import InputError

router = APIRouter(tags=["auth"])


def _body_error(msg: str, field: str) -> InputError:
    return InputError.one((field,), msg)


@router.post("/tokens/")
@router.post("/tokens", include_in_schema=False)
async def create_token(request: Request) -> JSONResponse:
    who = await deps.caller(request)
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _body_error("expected a JSON object", "allowed_apps")
    apps = body.get("allowed_apps")
    if not isinstance(apps, list) or not apps or not all(isinstance(a, str) and a for a in apps):
        raise _body_error("allowed_apps must be a non-empty list of app names", "allowed_apps")
    seconds = body.get("token_expiration", tokens.DEFAULT_EXPIRATION_S)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= tokens.MAX_EXPIRATION_S:
        raise _body_error(f"token_expiration must be whole seconds from 1 to {tokens.MAX_EXPIRATION_S}", "token_expiration")
    secret = await run_in_threadpool(lambda: deps.services(request).jwt_secret)  # may create it: not on the loop
    return JSONResponse(tokens.issue(secret, who.key_id, apps, seconds))

