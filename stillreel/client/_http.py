"""Pieces shared by the sync and async clients: configuration, routes, retry policy, upload sources.

Retry policy ("only where safe"): a request that never reached the server (connect error or
connect timeout) is always retried; requests that are safe to repeat (GET, and the idempotent
PUTs: cancel and multipart parts) are also retried on read errors and on 429/502/503/504.
Submitting and uploading (POST) are never replayed once sent, so a request is never queued twice.
"""

from __future__ import annotations

import functools
import io
import mimetypes
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from stillreel.client.errors import ConnectionFailed

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_APP = "fal-ai/kling-video"  # every Kling endpoint's status/result/cancel live under it
MULTIPART_THRESHOLD = 100 * 1024 * 1024  # fal's: bigger files go up in parts
PART_SIZE = 10 * 1024 * 1024
PART_CONCURRENCY = 4
RETRY_STATUSES = frozenset({429, 502, 503, 504})
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
SAFE_TO_REPEAT = (httpx.TransportError,)  # includes read errors / timeouts and NEVER_SENT


@functools.cache
def user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"stillreel-client/{version('stillreel')}"
    except PackageNotFoundError:
        return "stillreel-client"


def resolve_url(url: str | None) -> str:
    return (url or os.environ.get("STILLREEL_URL") or DEFAULT_URL).rstrip("/")


def resolve_key(key: str | None) -> str | None:
    return key or os.environ.get("STILLREEL_KEY") or None


def app_of(endpoint_id: str) -> str:
    """fal's ``owner/alias`` of an endpoint id (``fal-ai/kling-video/v2/...`` → ``fal-ai/kling-video``)."""
    parts = endpoint_id.strip("/").split("/")
    if parts[0] in ("workflows", "comfy"):
        return "/".join(parts[:3])
    return "/".join(parts[:2])


@dataclass(frozen=True)
class Routes:
    base: str

    def run(self, endpoint_id: str) -> str:
        return f"{self.base}/{endpoint_id.strip('/')}"

    def submit(self, endpoint_id: str) -> str:
        return f"{self.base}/queue/{endpoint_id.strip('/')}"

    def request(self, endpoint_id: str, request_id: str) -> str:
        return f"{self.base}/queue/{app_of(endpoint_id)}/requests/{quote(request_id, safe='')}"

    def status(self, endpoint_id: str, request_id: str) -> str:
        return self.request(endpoint_id, request_id) + "/status"

    def stream(self, endpoint_id: str, request_id: str) -> str:
        return self.request(endpoint_id, request_id) + "/status/stream"

    def cancel(self, endpoint_id: str, request_id: str) -> str:
        return self.request(endpoint_id, request_id) + "/cancel"

    @property
    def token(self) -> str:
        return f"{self.base}/storage/auth/token?storage_type=fal-cdn-v3"


def headers(key: str | None) -> dict[str, str]:
    h = {"User-Agent": user_agent(), "Accept": "application/json"}
    if key:
        h["Authorization"] = f"Key {key}"
    return h


def backoff(attempt: int, response: httpx.Response | None = None) -> float:
    if response is not None:
        retry_after = response.headers.get("retry-after")
        if retry_after:
            try:
                return min(float(retry_after), 30.0)
            except ValueError:
                pass
    return min(0.25 * 2**attempt, 8.0) * (0.5 + random.random() / 2)


def should_retry(safe: bool, attempt: int, attempts: int, exc: Exception | None, response: httpx.Response | None) -> bool:
    if attempt + 1 >= attempts:
        return False
    if exc is not None:
        return isinstance(exc, NEVER_SENT) or (safe and isinstance(exc, SAFE_TO_REPEAT))
    return safe and response is not None and response.status_code in RETRY_STATUSES


def connection_failed(url: str, exc: Exception) -> ConnectionFailed:
    return ConnectionFailed(f"cannot reach {httpx.URL(url).copy_with(query=None)}: {type(exc).__name__}: {exc}")


# --- upload sources ---------------------------------------------------------------------------


@dataclass
class UploadSource:
    """Bytes to upload, read in parts without loading a large file into memory."""

    size: int
    content_type: str
    file_name: str | None
    read_part: Callable[[int, int], bytes]  # (offset, length) -> bytes; thread-safe

    def read_all(self) -> bytes:
        return self.read_part(0, self.size)


def upload_source(source: bytes | bytearray | memoryview | str | os.PathLike | BinaryIO,
                  content_type: str | None = None, file_name: str | None = None) -> UploadSource:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return UploadSource(len(data), content_type or "application/octet-stream", file_name,
                            lambda off, n: data[off:off + n])
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")

        def read_path(off: int, n: int) -> bytes:
            with open(path, "rb") as f:  # one handle per read: parts are read from several threads
                f.seek(off)
                return f.read(n)

        guessed = mimetypes.guess_type(path.name)[0]
        return UploadSource(path.stat().st_size, content_type or guessed or "application/octet-stream",
                            file_name or path.name, read_path)
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        if isinstance(name, str) and os.path.isfile(name) and not isinstance(source, io.BytesIO):
            return upload_source(name, content_type, file_name or os.path.basename(name))
        return upload_source(source.read(), content_type, file_name)
    raise TypeError(f"cannot upload a {type(source).__name__}: pass bytes, a path or a binary file object")


def is_uploadable(value: Any) -> bool:
    """Input values the client uploads for you (strings, data URIs included, pass through)."""
    return isinstance(value, (bytes, bytearray, memoryview, os.PathLike)) or (
        hasattr(value, "read") and not isinstance(value, (str, dict, list))
    )


def walk_uploads(value: Any, upload: Callable[[Any], str]) -> Any:
    if is_uploadable(value):
        return upload(value)
    if isinstance(value, dict):
        return {k: walk_uploads(v, upload) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [walk_uploads(v, upload) for v in value]
    return value


async def walk_uploads_async(value: Any, upload) -> Any:
    if is_uploadable(value):
        return await upload(value)
    if isinstance(value, dict):
        return {k: await walk_uploads_async(v, upload) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [await walk_uploads_async(v, upload) for v in value]
    return value


def parts(size: int, part_size: int | None = None) -> list[tuple[int, int, int]]:
    """(part number from 1, offset, length) covering ``size`` bytes."""
    part_size = part_size or PART_SIZE
    return [(i + 1, off, min(part_size, size - off)) for i, off in enumerate(range(0, size, part_size))]


def upload_headers(token: dict, source: UploadSource) -> dict[str, str]:
    h = {
        "User-Agent": user_agent(),
        "Authorization": f"{token.get('token_type') or 'Bearer'} {token['token']}",
        "Content-Type": source.content_type,
        "Accept": "application/json",
    }
    if source.file_name:
        h["X-Fal-File-Name"] = source.file_name
    return h


def token_expired(token: dict | None) -> bool:
    if not token:
        return True
    from datetime import datetime, timezone

    try:
        expires = datetime.fromisoformat(str(token.get("expires_at")))
    except ValueError:
        return False
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    return (expires - datetime.now(timezone.utc)).total_seconds() < 60


# --- downloads --------------------------------------------------------------------------------
