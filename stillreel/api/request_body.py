"""A submit's request body: read it, parse and validate it, and plan it, with every check that can
run before queueing (the body's own guards are in ``input_guards``).

Schema errors and "the bound engine cannot do that" are 422 here (``InputError``, rendered by the
app's one error handler), at submit, never minutes later.
``data:`` URIs are stored as files on the way in, so the queue holds URLs, not megabytes. A small
body (``INLINE_BODY_BYTES``) is checked on the event loop, where its cost is bounded by its size;
a larger one, and storing files, run in the thread pool (``prepare``), with the checks of
``input_guards``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import mimetypes
import urllib.parse

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from stillreel.api import deps
from stillreel.api import input_guards as guards
from stillreel.endpoints.registry import Endpoint, Plan
from stillreel.errors import InputError


async def read_body(request: Request) -> bytes:
    """The raw body, refused past the size limit (413) or when it arrives too slowly (408): a
    client that trickles a body must not hold a connection and its buffer for ever. One deadline
    for the whole body (``asyncio.timeout``: a timer, where ``wait_for`` per chunk made a task)."""
    limits = deps.settings(request).limits
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body larger than {limit} bytes; upload large files first")
    body = bytearray()
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            while True:  # ASGI's own messages: Starlette's ``stream`` generator cost more than reading them
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                body += message.get("body", b"")
                if len(body) > limit:
                    raise HTTPException(413, f"request body larger than {limit} bytes; upload large files first")
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise HTTPException(408, f"the request body did not arrive within {limits.body_timeout_s:g} s") from None
    return bytes(body)


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


def store_data_uris(payload, storage, base: str, max_bytes: int, loc=("body",), url_field: bool = False):
    """Replace every data URI in a ``*_url`` field or ``*_urls`` list (nested too) with a stored
    file's URL."""
    if isinstance(payload, list):
        return [store_data_uris(v, storage, base, max_bytes, (*loc, i), url_field) for i, v in enumerate(payload)]
    if isinstance(payload, str) and url_field and payload[:5].lower() == "data:":
        try:
            data, mime = decode_data_uri(payload)
        except ValueError as exc:
            raise InputError.at(list(loc), f"invalid data URI: {exc}", "file_download_error") from None
        if len(data) > max_bytes:
            raise InputError.at(list(loc), f"the file is larger than {max_bytes} bytes", "file_too_large")
        ext = mimetypes.guess_extension(mime) or ".bin"
        name = next(p for p in reversed(loc) if isinstance(p, str))
        stored = storage.put_bytes(data, file_name=f"{name.removesuffix('_urls').removesuffix('_url')}{ext}",
                                   content_type=mime)
        return storage.url(stored.key, base)
    if not isinstance(payload, dict):
        return payload
    return {k: store_data_uris(v, storage, base, max_bytes, (*loc, k), guards.is_url_field(k))
            for k, v in payload.items()}


def has_data_uri(payload, url_field: bool = False) -> bool:
    if isinstance(payload, list):
        return any(has_data_uri(v, url_field) for v in payload)
    if isinstance(payload, dict):
        return any(has_data_uri(v, guards.is_url_field(k)) for k, v in payload.items())
    return url_field and isinstance(payload, str) and payload[:5].lower() == "data:"


def check(body: bytes, endpoint: Endpoint, caps, engine: str, limits) -> tuple[Plan, dict]:
    """Body → (plan, the input to store), every check made, nothing stored yet.

    The stored input is the endpoint model's dump of what the caller set (unknown fields dropped:
    fal ignores them, and a junk field was stored whole)."""
    try:
        payload = guards.parse(body)
        model = endpoint.validate(payload)  # validates first: no files stored for an invalid request
        stored = model.model_dump(mode="json", exclude_unset=True)
        del payload
        guards.check_stored(stored, limits.max_input_bytes)
        return endpoint.admit(endpoint.plan_model(model), caps, engine), stored  # capabilities: checked here, once
    except InputError as exc:  # the guards' BadInput too: echoed inputs made safe to send
        raise InputError(guards.safe_detail(exc.detail)) from None


def store_files(stored: dict, endpoint: Endpoint, caps, engine: str, storage, base: str, limits) -> tuple[Plan, dict]:
    """``check``'s input with its data URIs stored as files, planned again with their URLs."""
    stored = store_data_uris(stored, storage, base, limits.max_input_bytes)
    try:
        return endpoint.admit(endpoint.plan(stored), caps, engine), stored
    except InputError as exc:
        raise InputError(guards.safe_detail(exc.detail)) from None


def prepare(body: bytes, endpoint: Endpoint, caps, engine: str, storage, base: str, limits) -> tuple[Plan, dict]:
    """``check``, then ``store_files`` when the input has data URIs. Blocking: for the thread
    pool, because a 60 MB body takes seconds to parse, validate and scan."""
    plan, stored = check(body, endpoint, caps, engine, limits)
    if not has_data_uri(stored):
        return plan, stored
    return store_files(stored, endpoint, caps, engine, storage, base, limits)


# Bodies up to this size are checked on the event loop: a few hundred microseconds at most, less
# than handing them to the thread pool and back costs (two thread switches and their futex
# wake-ups were most of a submit's CPU time). Larger ones, and storing files, take the pool.
INLINE_BODY_BYTES = 16 * 1024


async def plan_request(request: Request, endpoint: Endpoint, base: str) -> tuple[Plan, dict]:
    services = deps.services(request)
    body = await read_body(request)
    spec = services.settings.engine_for(endpoint.id)
    engine = f"{spec.name} engine ({spec.options.get('model') or spec.name})"
    caps, storage, limits = services.capabilities[endpoint.id], services.storage, services.settings.limits
    if len(body) > INLINE_BODY_BYTES:
        return await run_in_threadpool(prepare, body, endpoint, caps, engine, storage, base, limits)
    plan, stored = check(body, endpoint, caps, engine, limits)
    if not has_data_uri(stored):
        return plan, stored
    return await run_in_threadpool(store_files, stored, endpoint, caps, engine, storage, base, limits)
