"""fal's storage routes, as the unmodified clients call them (fal-protocol.md §9, §15).

Python ``fal_client.upload*``: ``POST /storage/auth/token`` (a Bearer token and ``base_url``),
then ``POST /files/upload`` (raw body), or for files over 100 MiB ``POST /files/upload/multipart``
→ ``PUT {access_url}/multipart/{uploadId}/{n}`` (ETag header) → ``POST …/complete``. Its fallback
and the JS client: ``POST /storage/upload/initiate[-multipart]`` → ``{upload_url, file_url}``, then
unauthenticated PUTs to ``upload_url`` (JS parts: ``{path}/{n}{query}``, JSON ``{partNumber,
etag}`` back; completion at ``{path}/complete{query}``), so upload URLs carry a signed grant.

Stored files are public (``GET``/``HEAD /files/{key}``, Range → 206), as fal's media URLs are.
Bodies stream to a staging file; nothing holds a whole upload in memory.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from stillreel.api import deps
from stillreel.storage import FileTooLarge, Storage, StoredFile, UploadError
from stillreel.storage.grants import MULTIPART_TTL_S, SINGLE_TTL_S, UploadGrant
from stillreel.storage.lifecycle import Lifecycle, requested_lifetime
from stillreel.storage.naming import new_key, new_upload_id, normalize_content_type

router = APIRouter(tags=["storage"])
# Upload routes need a caller (an API key, or a Bearer token from /storage/auth/token).
CallerDep = deps.CallerDep

WRITE_BUFFER = 1024 * 1024
MAX_JSON_BODY = 1024 * 1024  # a completion lists at most 10,000 parts
# Keys are random and never reused, so a stored file can be cached for good. The sandbox CSP and
# nosniff stop an uploaded HTML or SVG file from running script on this server's origin.
FILE_HEADERS = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "Content-Security-Policy": "sandbox",
    "X-Content-Type-Options": "nosniff",
}


# -- helpers ---------------------------------------------------------------------------------


def _storage(request: Request) -> Storage:
    return deps.services(request).storage


def _upload_secret(request: Request) -> bytes:
    """The HMAC key for upload grants, shared through the job database by every API replica.
    Blocking on first use (it may create the row): call it in the thread pool."""
    return deps.services(request).upload_secret


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status_code=413,
        detail=f"The file is larger than this server's upload limit of {_size_text(limit)}",
    )


def _size_text(n: int) -> str:
    mib = n / (1024 * 1024)
    return f"{mib:g} MiB" if mib >= 1 else f"{n} bytes"


async def _receive(request: Request, storage: Storage, limit: int) -> tuple[Path, int]:
    """Stream the request body into a staging file; 413 as soon as it passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    fd, name = tempfile.mkstemp(dir=storage.staging_dir, prefix="recv-")
    path = Path(name)
    size = 0
    buffer = bytearray()
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                buffer += chunk
                if len(buffer) >= WRITE_BUFFER:
                    await run_in_threadpool(f.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await run_in_threadpool(f.write, bytes(buffer))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size


def _file_json(stored: StoredFile, url: str) -> dict:
    return {
        "access_url": url,
        "file_url": url,
        "uploaded": True,
        "content_type": stored.content_type,
        "file_name": stored.file_name,
        "file_size": stored.size,
    }


def _lifecycle(request: Request) -> Lifecycle:
    """The app's object expiries."""
    return deps.services(request).lifecycle


async def _expire(request: Request, key: str, lifetime: float | None) -> None:
    if lifetime:  # fal's X-Fal-Object-Lifecycle: the file answers 404 after this many seconds
        await run_in_threadpool(_lifecycle(request).expire_in, key, lifetime)


async def _store_body(request: Request, *, key: str | None, file_name: str | None, content_type: str | None,
                      lifetime: float | None):
    storage = _storage(request)
    limits = deps.settings(request).limits
    # The key is named here: the staging file's own name must not leak into it.
    key = new_key(file_name, content_type) if key is None else key
    path, _ = await _receive(request, storage, limits.max_upload_bytes)
    try:
        stored = await run_in_threadpool(
            storage.put_file, path, file_name=file_name, content_type=content_type, key=key, move=True
        )
    finally:
        path.unlink(missing_ok=True)
    await _expire(request, stored.key, lifetime)
    return _file_json(stored, storage.url(stored.key, deps.base_url(request)))


async def _json_body(request: Request) -> dict:
    """A small JSON object body (initiate, complete); anything else reads as ``{}``."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BODY:
            raise HTTPException(status_code=413, detail="The JSON body is too large")
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _new_grant(file_name: str | None, content_type: str | None, *, multipart: bool, request: Request) -> UploadGrant:
    content_type = normalize_content_type(content_type)
    return UploadGrant(
        key=new_key(file_name, content_type),
        upload_id=new_upload_id(),
        content_type=content_type,
        file_name=file_name,
        expires=int(time.time()) + (MULTIPART_TTL_S if multipart else SINGLE_TTL_S),
        multipart=multipart,
        lifetime=requested_lifetime(request.headers),
    )


async def _grant(request: Request, token: str, *, multipart: bool, key: str | None = None) -> UploadGrant:
    secret = await run_in_threadpool(_upload_secret, request)
    grant = UploadGrant.verify(token, secret)
    if grant is None:
        raise HTTPException(status_code=403, detail="This upload URL is invalid or has expired")
    if grant.multipart != multipart or (key is not None and key != grant.key):
        raise HTTPException(status_code=403, detail="This upload URL does not grant that operation")
    return grant


async def _put_part(request: Request, grant: UploadGrant, part_number: int) -> Response:
    storage = _storage(request)
    path, _ = await _receive(request, storage, deps.settings(request).limits.max_upload_bytes)
    try:
        etag = await run_in_threadpool(storage.put_part, grant.upload_id, part_number, path)
    except UploadError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    finally:
        path.unlink(missing_ok=True)
    # Python reads the ETag header; JS parses this JSON body.
    return JSONResponse({"partNumber": part_number, "etag": etag}, headers={"ETag": etag})


async def _complete(request: Request, grant: UploadGrant) -> dict:
    body = await _json_body(request)
    try:
        parts = [(int(p["partNumber"]), str(p["etag"])) for p in body.get("parts") or []]
    except (KeyError, TypeError, ValueError):
        raise HTTPException(
            status_code=400, detail='Expected {"parts": [{"partNumber": 1, "etag": "…"}, …]}'
        ) from None
    storage = _storage(request)
    limit = deps.settings(request).limits.max_upload_bytes
    try:
        stored = await run_in_threadpool(
            lambda: storage.complete_multipart(
                grant.upload_id,
                parts,
                key=grant.key,
                file_name=grant.file_name,
                content_type=grant.content_type,
                max_bytes=limit,
            )
        )
    except FileTooLarge:
        raise _too_large(limit) from None
    except UploadError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    await _expire(request, stored.key, grant.lifetime)
    return _file_json(stored, storage.url(stored.key, deps.base_url(request)))


# -- tokens (Python client) ------------------------------------------------------------------


@router.post("/storage/auth/token")
async def storage_token(request: Request, caller: CallerDep) -> dict:
    """A Bearer token for the upload routes (fal's ``storage_type=fal-cdn-v3`` CDN token)."""
    now = dt.datetime.now(dt.UTC)
    token, expires_at = await run_in_threadpool(deps.services(request).keys.issue_token, caller.key_id)
    if expires_at.tzinfo is None:  # fal_client compares with an aware datetime
        expires_at = expires_at.replace(tzinfo=dt.UTC)
    return {
        "token": token,
        "token_type": "Bearer",
        "base_url": deps.base_url(request),
        "expires_at": expires_at.isoformat(),
        "created_at": now.isoformat(),
    }


# -- CDN uploads (Python client) -------------------------------------------------------------


@router.post("/files/upload")
async def upload_file(request: Request, caller: CallerDep) -> dict:
    """Store the raw request body; ``X-Fal-File-Name`` names it, ``Content-Type`` types it."""
    return await _store_body(
        request,
        key=None,
        file_name=request.headers.get("x-fal-file-name"),
        content_type=request.headers.get("content-type"),
        lifetime=requested_lifetime(request.headers),
    )


@router.post("/files/upload/multipart")
async def start_multipart(request: Request, caller: CallerDep) -> dict:
    grant = _new_grant(
        request.headers.get("x-fal-file-name"), request.headers.get("content-type"), multipart=True, request=request
    )
    secret = await run_in_threadpool(_upload_secret, request)
    url = _storage(request).url(grant.key, deps.base_url(request))
    return {"access_url": url, "uploadId": grant.sign(secret)}


@router.put("/files/{key:path}/multipart/{upload_id}/{part_number:int}")
async def put_multipart_part(
    request: Request, key: str, upload_id: str, part_number: int, caller: CallerDep
) -> Response:
    grant = await _grant(request, upload_id, multipart=True, key=key)
    return await _put_part(request, grant, part_number)


@router.post("/files/{key:path}/multipart/{upload_id}/complete")
async def complete_multipart(
    request: Request, key: str, upload_id: str, caller: CallerDep
) -> dict:
    grant = await _grant(request, upload_id, multipart=True, key=key)
    return await _complete(request, grant)


# -- signed-URL uploads (JS client, Python fallback) -----------------------------------------


async def _initiate(request: Request, *, multipart: bool) -> dict:
    body = await _json_body(request)
    file_name = body.get("file_name") if isinstance(body.get("file_name"), str) else None
    content_type = body.get("content_type") if isinstance(body.get("content_type"), str) else None
    grant = _new_grant(file_name, content_type, multipart=multipart, request=request)
    secret = await run_in_threadpool(_upload_secret, request)
    base = deps.base_url(request)
    return {
        "upload_url": f"{base}/storage/upload/signed?token={quote(grant.sign(secret), safe='')}",
        "file_url": _storage(request).url(grant.key, base),
    }


@router.post("/storage/upload/initiate")
async def initiate_upload(request: Request, caller: CallerDep) -> dict:
    return await _initiate(request, multipart=False)


@router.post("/storage/upload/initiate-multipart")
async def initiate_multipart_upload(request: Request, caller: CallerDep) -> dict:
    return await _initiate(request, multipart=True)


@router.put("/storage/upload/signed")
async def signed_put(request: Request, token: str = "") -> dict:
    grant = await _grant(request, token, multipart=False)
    content_type = grant.content_type
    if content_type == "application/octet-stream":  # the initiate call did not say; the PUT may
        content_type = normalize_content_type(request.headers.get("content-type"))
    # Single use: the file's URL was handed out at initiate and is served as immutable, so a replayed
    # URL must not swap the bytes behind it. (Checked in this process for PUTs under way too.)
    if grant.key in _SIGNED_IN_FLIGHT or await run_in_threadpool(_storage(request).stat, grant.key) is not None:
        raise HTTPException(status_code=403, detail="This upload URL was already used (upload URLs are single-use)")
    _SIGNED_IN_FLIGHT.add(grant.key)
    try:
        return await _store_body(request, key=grant.key, file_name=grant.file_name, content_type=content_type,
                                 lifetime=grant.lifetime)
    finally:
        _SIGNED_IN_FLIGHT.discard(grant.key)


_SIGNED_IN_FLIGHT: set[str] = set()  # keys of signed single PUTs being received by this process


@router.put("/storage/upload/signed/{part_number:int}")
async def signed_put_part(request: Request, part_number: int, token: str = "") -> Response:
    grant = await _grant(request, token, multipart=True)
    return await _put_part(request, grant, part_number)


@router.post("/storage/upload/signed/complete")
async def signed_complete(request: Request, token: str = "") -> dict:
    grant = await _grant(request, token, multipart=True)
    return await _complete(request, grant)


# -- serving ---------------------------------------------------------------------------------


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """(start, end exclusive) for one ``bytes=`` range; None to send everything; False if
    unsatisfiable. Several ranges are answered with the whole file (allowed by RFC 9110)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            return (max(0, size - n), size) if n > 0 and size > 0 else False
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    except ValueError:
        return None
    if start >= size or end <= start:
        return False
    return start, end


@router.api_route("/files/{key:path}", methods=["GET", "HEAD"])
async def serve_file(request: Request, key: str) -> Response:
    storage = _storage(request)
    stored = await run_in_threadpool(storage.stat, key)
    if stored is None or await run_in_threadpool(_lifecycle(request).expired, key):
        return JSONResponse({"detail": "File not found"}, status_code=404)
    path = storage.local_path(key)
    if path is not None:  # Starlette answers Range (206), multi-range and HEAD itself
        return FileResponse(path, media_type=stored.content_type, headers=FILE_HEADERS)
    redirect = await run_in_threadpool(storage.redirect_url, key)
    if redirect:
        return RedirectResponse(redirect, status_code=307)
    headers = {**FILE_HEADERS, "Accept-Ranges": "bytes", "Content-Type": stored.content_type}
    span = _byte_range(request.headers.get("range"), stored.size)
    if span is False:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{stored.size}"})
    status = 200
    start, end = 0, stored.size
    if span:
        start, end = span
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{stored.size}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    return StreamingResponse(storage.iter_range(key, start, end), status_code=status, headers=headers)
