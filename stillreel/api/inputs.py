"""Turning an HTTP request body into a queued plan, with every check that can run before queueing.

Schema errors and "the bound engine cannot do that" are 422 here, at submit, never minutes later.
``data:`` URIs are stored as files on the way in, so the queue holds URLs, not megabytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import urllib.parse

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from stillreel.api import deps
from stillreel.endpoints.registry import Endpoint, InputError, Plan


def validation_error(loc: list, msg: str, type: str) -> HTTPException:
    return HTTPException(422, [{"loc": loc, "msg": msg, "type": type}])


async def read_json(request: Request) -> object:
    limit = request.app.state.settings.limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body larger than {limit} bytes; upload large files first")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body larger than {limit} bytes; upload large files first")
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise validation_error(["body"], f"the body is not valid JSON: {exc}", "json_invalid") from None


def decode_data_uri(uri: str) -> tuple[bytes, str]:
    """``data:[<mime>][;base64],<data>`` → (bytes, mime). Raises ValueError."""
    header, sep, data = uri[5:].partition(",")
    if not sep:
        raise ValueError("a data URI needs a comma between its header and its data")
    params = header.split(";")
    mime = params[0] or "text/plain"
    if "base64" in params[1:]:
        try:
            return base64.b64decode(urllib.parse.unquote(data), validate=False), mime
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"invalid base64 data: {exc}") from None
    return urllib.parse.unquote_to_bytes(data), mime


def store_data_uris(payload, storage, base: str, max_bytes: int, loc=("body",)):
    """Replace every ``*_url`` data URI in ``payload`` (nested too) with a stored file's URL."""
    if isinstance(payload, list):
        return [store_data_uris(v, storage, base, max_bytes, (*loc, i)) for i, v in enumerate(payload)]
    if not isinstance(payload, dict):
        return payload
    out = {}
    for key, value in payload.items():
        here = (*loc, key)
        if isinstance(value, str) and key.endswith("_url") and value[:5].lower() == "data:":
            try:
                data, mime = decode_data_uri(value)
            except ValueError as exc:
                raise validation_error(list(here), f"invalid data URI: {exc}", "file_download_error") from None
            if len(data) > max_bytes:
                raise validation_error(list(here), f"the file is larger than {max_bytes} bytes", "file_too_large")
            ext = mimetypes.guess_extension(mime) or ".bin"
            stored = storage.put_bytes(data, file_name=f"{key.removesuffix('_url')}{ext}", content_type=mime)
            out[key] = storage.url(stored.key, base)
        else:
            out[key] = store_data_uris(value, storage, base, max_bytes, here)
    return out


def has_data_uri(payload) -> bool:
    if isinstance(payload, list):
        return any(has_data_uri(v) for v in payload)
    if isinstance(payload, dict):
        return any((isinstance(v, str) and k.endswith("_url") and v[:5].lower() == "data:") or has_data_uri(v)
                   for k, v in payload.items())
    return False


async def plan_request(request: Request, endpoint: Endpoint) -> tuple[Plan, dict]:
    app = request.app
    payload = await read_json(request)
    try:
        plan = endpoint.plan(payload)  # validates first: no files stored for an invalid request
    except InputError as exc:
        raise HTTPException(422, exc.detail) from None
    spec = app.state.settings.engine_for(endpoint.id)
    engine = f"{spec.name} engine ({spec.options.get('model') or spec.name})"
    try:  # capabilities are checked here, once: explicit features refused, defaults dropped
        plan = endpoint.admit(plan, app.state.capabilities[endpoint.id], engine)
    except InputError as exc:
        raise HTTPException(422, exc.detail) from None
    if not has_data_uri(payload):
        return plan, payload
    limits = app.state.settings.limits
    payload = await run_in_threadpool(
        store_data_uris, payload, app.state.storage, deps.base_url(request), limits.max_input_bytes
    )
    caps = app.state.capabilities[endpoint.id]
    return endpoint.admit(endpoint.plan(payload), caps, engine), payload
