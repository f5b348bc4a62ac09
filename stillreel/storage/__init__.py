"""Where files live: uploaded inputs and generated videos, behind one small interface.

Two backends: ``local`` (a folder, default ``data_dir/files``) and ``s3`` (any S3-compatible
service, through obstore). Keys look like fal's CDN paths, ``b/<8 hex>/<random>_<name>``; the
random part makes a file's URL a capability, so files are served publicly without auth, as fal
serves its media. Keys never contain a segment starting with ``.``: those names are reserved for
the backends' staging areas (``.tmp``, ``.uploads``) and can never be reached through a URL.

Storage calls block (disk or network): async code runs them in a thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from stillreel.config import Settings


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    content_type: str
    file_name: str


class FileTooLarge(Exception):
    """A stored file (or an upload in progress) is larger than the caller's limit."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"the file is {size} bytes, more than the {limit} byte limit")
        self.size = size
        self.limit = limit


class UploadError(ValueError):
    """A multipart upload cannot be completed as asked (a missing part, a wrong ETag)."""


@runtime_checkable
class Storage(Protocol):
    # A local folder for files being received; on the local backend it is on the same
    # filesystem as the store, so ``put_file(..., move=True)`` is a rename.
    staging_dir: Path

    def put_file(
        self,
        src: Path,
        *,
        file_name: str | None,
        content_type: str | None,
        key: str | None = None,
        move: bool = False,
    ) -> StoredFile:
        """Store a file under a new key (or ``key``); ``move`` lets the backend consume ``src``."""

    def put_bytes(
        self, data: bytes, *, file_name: str | None, content_type: str | None, key: str | None = None
    ) -> StoredFile: ...

    def stat(self, key: str) -> StoredFile | None:
        """The stored file, or None when the key is invalid or absent."""

    def read_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
        """The file's bytes; ``FileNotFoundError`` if absent, ``FileTooLarge`` over ``max_bytes``."""

    def iter_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive) of a stored file, in chunks."""

    def local_path(self, key: str) -> Path | None:
        """A path on this machine holding the file (local backend), else None."""

    def redirect_url(self, key: str) -> str | None:
        """Where to send a browser for the bytes (a presigned URL), or None to serve them here."""

    def url(self, key: str, base_url: str) -> str:
        """The public URL of a stored file (local: ``{base_url}/files/{key}``)."""

    def key_from_url(self, url: str) -> str | None:
        """The key when ``url`` points at one of our stored files (any host alias), else None."""

    def delete(self, key: str) -> None: ...

    # Multipart uploads: parts are staged under the upload's id (random hex) and joined in
    # part-number order when the client completes the upload.
    def put_part(self, upload_id: str, part_number: int, src: Path) -> str:
        """Stage one part (consuming ``src``); returns its ETag (quoted MD5, as S3 does)."""

    def complete_multipart(
        self,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        key: str,
        file_name: str | None,
        content_type: str | None,
        max_bytes: int | None = None,
    ) -> StoredFile:
        """Join the listed (part number, ETag) parts into ``key``; ``UploadError`` if one is missing."""

    def abort_multipart(self, upload_id: str) -> None: ...

    def sweep(self, older_than_s: float) -> int:
        """Remove staged uploads and temp files older than this; returns how many were removed."""

    def old_files(self, older_than_s: float, now: float | None = None) -> Iterator[str]:
        """Keys of stored files last written more than ``older_than_s`` ago (``--retention``)."""


def open_storage(settings: Settings) -> Storage:
    """The storage ``settings.storage_url`` names: None/``file://…``/a path → local, ``s3://…`` → S3."""
    url = settings.storage_url
    if not url:
        from stillreel.storage.local import LocalStorage

        return LocalStorage(Path(settings.data_dir) / "files")
    if url.startswith("s3://"):
        from stillreel.storage.s3 import S3Storage

        return S3Storage.from_url(url, staging_dir=Path(settings.data_dir) / "tmp")
    if url.startswith("file://"):
        from stillreel.storage.local import LocalStorage

        return LocalStorage(Path(url[len("file://") :]))
    if "://" not in url:
        from stillreel.storage.local import LocalStorage

        return LocalStorage(Path(url))
    raise ValueError(f"unsupported storage URL {url!r}: use a folder, file://PATH or s3://BUCKET/PREFIX")


__all__ = [
    "FileTooLarge",
    "Storage",
    "StoredFile",
    "UploadError",
    "open_storage",
]
