"""Files in an S3-compatible bucket (AWS, MinIO, R2, moto …), through obstore.

``s3://BUCKET/PREFIX?endpoint=http://127.0.0.1:9000&region=us-east-1`` with credentials from the
usual AWS environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` …). More query options:

* ``public_url=https://cdn.example.com/videos`` — the bucket (or a CDN in front of it) is
  publicly readable there: file URLs point at it directly instead of at this server;
* ``presign=true`` — ``GET /files/<key>`` answers with a redirect to a presigned URL (the bucket
  must be reachable by the clients) instead of streaming the bytes through the API.

Multipart uploads stage their parts as objects under ``.uploads/<id>/`` in the same bucket, so
any API replica can take any part, and the join streams them into one object.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import obstore
from obstore.store import S3Store

from stillreel.storage import FileTooLarge, StoredFile, UploadError
from stillreel.storage.naming import (
    choose_parts,
    content_type_for,
    display_name,
    key_in_url,
    md5_file,
    new_key,
    normalize_content_type,
    valid_key,
    valid_upload_id,
)

CHUNK = 8 * 1024 * 1024  # S3's multipart minimum is 5 MiB
PRESIGN_TTL = dt.timedelta(hours=1)
_TRUE = {"1", "true", "yes", "on"}


class S3Storage:
    def __init__(
        self,
        store: S3Store,
        *,
        staging_dir: Path,
        public_url: str | None = None,
        presign: bool = False,
        description: str = "s3",
    ):
        self.store = store
        self.staging_dir = Path(staging_dir)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.presign = presign
        self._description = description

    @classmethod
    def from_url(cls, url: str, *, staging_dir: Path) -> S3Storage:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an S3 storage URL: {url!r} (expected s3://BUCKET/PREFIX?…)")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        endpoint = query.pop("endpoint", None) or os.environ.get("AWS_ENDPOINT_URL")
        region = query.pop("region", None)
        public_url = query.pop("public_url", None)
        presign = query.pop("presign", "false").lower() in _TRUE
        if query:
            raise ValueError(f"unknown S3 storage option(s): {', '.join(sorted(query))}")
        kwargs: dict = {}
        if endpoint:
            kwargs["endpoint"] = endpoint
        if region:
            kwargs["region"] = region
        prefix = parts.path.strip("/") or None
        client_options = {"allow_http": True} if endpoint and endpoint.startswith("http://") else None
        store = S3Store(parts.netloc, prefix=prefix, client_options=client_options, **kwargs)
        return cls(
            store,
            staging_dir=staging_dir,
            public_url=public_url,
            presign=presign,
            description=f"s3://{parts.netloc}/{prefix or ''}",
        )

    def __repr__(self) -> str:
        return f"S3Storage({self._description!r})"

    def _check(self, key: str) -> str:
        if not valid_key(key):
            raise FileNotFoundError(f"invalid key {key!r}")
        return key

    def _part_prefix(self, upload_id: str) -> str:
        if not valid_upload_id(upload_id):
            raise UploadError(f"invalid upload id {upload_id!r}")
        return f".uploads/{upload_id}/"

    # -- writing -----------------------------------------------------------------------------

    def put_file(
        self,
        src: Path,
        *,
        file_name: str | None,
        content_type: str | None,
        key: str | None = None,
        move: bool = False,
    ) -> StoredFile:
        key = self._check(new_key(file_name or Path(src).name, content_type) if key is None else key)
        content_type = _type(content_type, key)
        size = os.path.getsize(src)
        obstore.put(self.store, key, Path(src), attributes={"Content-Type": content_type}, chunk_size=CHUNK)
        if move:
            Path(src).unlink(missing_ok=True)
        return StoredFile(key, size, content_type, display_name(key))

    def put_bytes(
        self, data: bytes, *, file_name: str | None, content_type: str | None, key: str | None = None
    ) -> StoredFile:
        key = self._check(new_key(file_name, content_type) if key is None else key)
        content_type = _type(content_type, key)
        obstore.put(self.store, key, data, attributes={"Content-Type": content_type})
        return StoredFile(key, len(data), content_type, display_name(key))

    def delete(self, key: str) -> None:
        try:
            obstore.delete(self.store, self._check(key))
        except FileNotFoundError:
            pass

    # -- reading -----------------------------------------------------------------------------

    def stat(self, key: str) -> StoredFile | None:
        if not valid_key(key):
            return None
        try:
            meta = obstore.head(self.store, key)
        except FileNotFoundError:
            return None
        return StoredFile(key, meta["size"], content_type_for(key), display_name(key))

    def read_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
        result = obstore.get(self.store, self._check(key))
        size = result.meta["size"]
        if max_bytes is not None and size > max_bytes:
            raise FileTooLarge(size, max_bytes)
        return bytes(result.bytes())

    def iter_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        if end <= start:
            return
        result = obstore.get(self.store, self._check(key), options={"range": (start, end)})
        for chunk in result.stream(min_chunk_size=1024 * 1024):
            yield bytes(chunk)

    def local_path(self, key: str) -> Path | None:
        return None

    def redirect_url(self, key: str) -> str | None:
        if self.public_url:
            return f"{self.public_url}/{key}"
        if self.presign:
            return obstore.sign(self.store, "GET", self._check(key), PRESIGN_TTL)
        return None

    def url(self, key: str, base_url: str) -> str:
        if self.public_url:
            return f"{self.public_url}/{key}"
        return f"{base_url.rstrip('/')}/files/{key}"

    def key_from_url(self, url: str) -> str | None:
        key = key_in_url(url, (self.public_url,) if self.public_url else ())
        return key if key is not None and self.stat(key) is not None else None

    # -- multipart ---------------------------------------------------------------------------

    def put_part(self, upload_id: str, part_number: int, src: Path) -> str:
        if not 1 <= part_number <= 10_000:
            raise UploadError(f"part numbers run from 1 to 10000, got {part_number}")
        prefix = self._part_prefix(upload_id)
        digest = md5_file(src)
        path = f"{prefix}{part_number:05d}-{digest}"
        obstore.put(self.store, path, Path(src), chunk_size=CHUNK)
        Path(src).unlink(missing_ok=True)
        for stale in self._staged(upload_id):
            if stale[0] == part_number and stale[1] != digest:
                obstore.delete(self.store, f"{prefix}{part_number:05d}-{stale[1]}")
        return f'"{digest}"'

    def _staged(self, upload_id: str) -> dict[tuple[int, str], tuple[str, int]]:
        prefix = self._part_prefix(upload_id)
        found = {}
        for batch in obstore.list(self.store, prefix=prefix):
            for meta in batch:
                name = meta["path"].rsplit("/", 1)[-1]
                number, _, digest = name.partition("-")
                found[(int(number), digest)] = (meta["path"], meta["size"])
        return found

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
        self._check(key)
        staged = self._staged(upload_id)
        if not staged:
            done = self.stat(key)  # a retried completion after one that succeeded
            if done is not None:
                return done
        chosen = choose_parts(staged, parts)
        total = sum(size for _, size in chosen)
        if max_bytes is not None and total > max_bytes:
            self.abort_multipart(upload_id)
            raise FileTooLarge(total, max_bytes)

        content_type = _type(content_type, key)
        # A writer fed from Python (not an iterator handed to obstore, whose runtime cannot run
        # the part downloads inside it); an exception inside the block aborts the upload.
        with obstore.open_writer(
            self.store, key, attributes={"Content-Type": content_type}, buffer_size=CHUNK
        ) as writer:
            for path, _ in chosen:
                for chunk in obstore.get(self.store, path).stream(min_chunk_size=CHUNK):
                    writer.write(chunk)
        self.abort_multipart(upload_id)
        return StoredFile(key, total, content_type, display_name(key))

    def abort_multipart(self, upload_id: str) -> None:
        paths = [path for path, _ in self._staged(upload_id).values()]
        if paths:
            obstore.delete(self.store, paths)

    def sweep(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self.staging_dir.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    removed += 1
            except FileNotFoundError:
                pass
        old = []
        for batch in obstore.list(self.store, prefix=".uploads/"):
            old += [m["path"] for m in batch if m["last_modified"].timestamp() < cutoff]
        if old:
            obstore.delete(self.store, old)
        return removed + len(old)

    def old_files(self, older_than_s: float, now: float | None = None) -> Iterator[str]:
        cutoff = (time.time() if now is None else now) - older_than_s
        for batch in obstore.list(self.store):
            for meta in batch:
                key = meta["path"]
                if valid_key(key) and meta["last_modified"].timestamp() < cutoff:  # skips .uploads/
                    yield key


def _type(content_type: str | None, key: str) -> str:
    declared = normalize_content_type(content_type)
    return declared if declared != "application/octet-stream" else content_type_for(key)
