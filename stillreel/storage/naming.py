"""Keys, file names, content types and part bookkeeping, shared by the storage backends."""

from __future__ import annotations

import hashlib
import mimetypes
import re
import secrets
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from stillreel.storage import UploadError

T = TypeVar("T")

OCTET_STREAM = "application/octet-stream"

# Types the platform's mime tables may lack or disagree on; these are the ones inputs and
# outputs use, so they must be stable across machines.
_TYPES = {
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".avif": "image/avif",
    ".heic": "image/heic",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".json": "application/json",
    ".txt": "text/plain",
}
_EXTENSIONS = {
    "video/mp4": ".mp4",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/mpeg": ".mp3",
    "text/plain": ".txt",
}

_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_KEY_LENGTH = 512
MAX_NAME_LENGTH = 120


def normalize_content_type(value: str | None) -> str:
    """``"image/PNG; charset=x"`` → ``"image/png"``; empty → ``application/octet-stream``."""
    value = (value or "").split(";")[0].strip().lower()
    return value if "/" in value else OCTET_STREAM


def content_type_for(name: str) -> str:
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix in _TYPES:
        return _TYPES[suffix]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or OCTET_STREAM


def safe_file_name(file_name: str | None, content_type: str | None) -> str:
    """A URL-safe version of the caller's file name, with an extension that matches its type.

    The extension carries the content type for backends that keep no metadata (local files are
    served with the type their name implies), so a PNG uploaded as ``upload.bin`` becomes
    ``upload.bin.png``.
    """
    name = (file_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).lstrip("._-")[-MAX_NAME_LENGTH:].lstrip("._-") or "upload"
    declared = normalize_content_type(content_type)
    if declared != OCTET_STREAM and content_type_for(name) != declared:
        ext = _EXTENSIONS.get(declared) or mimetypes.guess_extension(declared, strict=False)
        if ext:
            name += ext
    return name


def new_key(file_name: str | None, content_type: str | None) -> str:
    """``b/<8 hex>/<random>_<name>``, as fal's v3 CDN names files."""
    return f"b/{secrets.token_hex(4)}/{secrets.token_urlsafe(12)}_{safe_file_name(file_name, content_type)}"


def valid_key(key: str) -> bool:
    """True for keys this server could have made: no traversal, no hidden (staging) segments."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return False
    return all(_SEGMENT.fullmatch(part) for part in key.split("/"))


def display_name(key: str) -> str:
    """The caller's file name back from a key (the part after ``<random>_``)."""
    last = key.rsplit("/", 1)[-1]
    if key.startswith("b/") and key.count("/") == 2 and len(last) > 17 and last[16] == "_":
        return last[17:]
    return last


def key_in_url(url: str, public_bases: tuple[str, ...] = ()) -> str | None:
    """The key a URL names if it looks like one of ours: ``…/files/<key>`` on any host, or a
    URL under one of ``public_bases`` (e.g. a CDN in front of the bucket). Existence is not checked.
    """
    if not isinstance(url, str):
        return None
    for base in public_bases:
        base = base.rstrip("/") + "/"
        if url.startswith(base):
            key = unquote(urlsplit(url[len(base) :]).path)
            return key if valid_key(key) else None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    path = unquote(parts.path)
    marker = path.find("/files/")
    if marker < 0:
        return None
    key = path[marker + len("/files/") :]
    return key if valid_key(key) else None


def bare_etag(etag: str) -> str:
    """``W/"abc"`` / ``"abc"`` / ``abc`` → ``abc``: clients echo ETags with or without quotes."""
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def valid_upload_id(upload_id: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{32}", upload_id or ""))


def new_upload_id() -> str:
    return secrets.token_hex(16)


def choose_parts(staged: dict[tuple[int, str], T], parts: list[tuple[int, str]]) -> list[T]:
    """The staged files for the client's list, in part-number order (clients list them in the
    order they finished, not sorted)."""
    if not parts:
        raise UploadError("the completion lists no parts")
    chosen: dict[int, T] = {}
    for number, etag in parts:
        path = staged.get((int(number), bare_etag(etag)))
        if path is None:
            raise UploadError(f"part {number} with ETag {etag} was not uploaded")
        chosen[int(number)] = path
    return [chosen[n] for n in sorted(chosen)]


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()
