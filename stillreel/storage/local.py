"""Files in a local folder: the default, and what embedded mode uses.

Layout under the root: ``b/<8 hex>/<random>_<name>`` for stored files, ``.tmp/`` for files being
written (renamed into place once complete, so a reader never sees half a file), and
``.uploads/<upload id>/<part>-<md5>`` for staged multipart parts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from stillreel.storage import FileTooLarge, StoredFile, UploadError
from stillreel.storage.naming import (
    choose_parts,
    content_type_for,
    display_name,
    key_in_url,
    md5_file,
    new_key,
    valid_key,
    valid_upload_id,
)

CHUNK = 1024 * 1024


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.staging_dir = self.root / ".tmp"
        self._uploads = self.root / ".uploads"
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        if not valid_key(key):
            raise FileNotFoundError(f"invalid key {key!r}")
        path = (self.root / key).resolve()
        # valid_key already rules out "..", but a symlink planted in the tree must not lead out.
        if not path.is_relative_to(self.root):
            raise FileNotFoundError(f"invalid key {key!r}")
        return path

    def _part_dir(self, upload_id: str) -> Path:
        if not valid_upload_id(upload_id):
            raise UploadError(f"invalid upload id {upload_id!r}")
        return self._uploads / upload_id

    def _stored(self, key: str, size: int) -> StoredFile:
        return StoredFile(key=key, size=size, content_type=content_type_for(key), file_name=display_name(key))

    def _place(self, tmp: Path, key: str) -> StoredFile:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        return self._stored(key, dest.stat().st_size)

    def _temp(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self.staging_dir, prefix="put-")
        os.close(fd)
        return Path(name)

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
        key = new_key(file_name or Path(src).name, content_type) if key is None else key
        self._path(key)  # refuse a bad key before copying anything
        tmp = self._temp()
        try:
            if move:
                try:
                    os.replace(src, tmp)
                except OSError:  # another filesystem: copy, then drop the source
                    shutil.copyfile(src, tmp)
                    Path(src).unlink(missing_ok=True)
            else:
                shutil.copyfile(src, tmp)
            _fsync(tmp)
            return self._place(tmp, key)
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(
        self, data: bytes, *, file_name: str | None, content_type: str | None, key: str | None = None
    ) -> StoredFile:
        key = new_key(file_name, content_type) if key is None else key
        self._path(key)
        tmp = self._temp()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return self._place(tmp, key)
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except FileNotFoundError:
            pass

    # -- reading -----------------------------------------------------------------------------

    def stat(self, key: str) -> StoredFile | None:
        try:
            path = self._path(key)
            size = path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self._stored(key, size) if path.is_file() else None

    def read_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
        path = self._path(key)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise FileTooLarge(size, max_bytes)
            return f.read()

    def iter_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        with open(self._path(key), "rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def local_path(self, key: str) -> Path | None:
        try:
            path = self._path(key)
        except FileNotFoundError:
            return None
        return path if path.is_file() else None

    def redirect_url(self, key: str) -> str | None:
        return None

    def url(self, key: str, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/files/{key}"

    def key_from_url(self, url: str) -> str | None:
        key = key_in_url(url)
        return key if key is not None and self.stat(key) is not None else None

    # -- multipart ---------------------------------------------------------------------------

    def put_part(self, upload_id: str, part_number: int, src: Path) -> str:
        if not 1 <= part_number <= 10_000:
            raise UploadError(f"part numbers run from 1 to 10000, got {part_number}")
        folder = self._part_dir(upload_id)
        folder.mkdir(parents=True, exist_ok=True)
        digest = md5_file(src)
        dest = folder / f"{part_number:05d}-{digest}"
        os.replace(src, dest)
        # A retried part replaces the earlier attempt.
        for stale in folder.glob(f"{part_number:05d}-*"):
            if stale != dest:
                stale.unlink(missing_ok=True)
        return f'"{digest}"'

    def _staged(self, upload_id: str) -> dict[tuple[int, str], Path]:
        folder = self._part_dir(upload_id)
        found = {}
        for path in folder.glob("*-*") if folder.is_dir() else ():
            number, _, digest = path.name.partition("-")
            found[(int(number), digest)] = path
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
        staged = self._staged(upload_id)
        if not staged:
            done = self.stat(key)  # a retried completion after one that succeeded
            if done is not None:
                return done
        chosen = choose_parts(staged, parts)
        total = sum(p.stat().st_size for p in chosen)
        if max_bytes is not None and total > max_bytes:
            self.abort_multipart(upload_id)
            raise FileTooLarge(total, max_bytes)
        self._path(key)
        tmp = self._temp()
        try:
            with open(tmp, "wb") as out:
                for path in chosen:
                    with open(path, "rb") as f:
                        shutil.copyfileobj(f, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            stored = self._place(tmp, key)
        finally:
            tmp.unlink(missing_ok=True)
        self.abort_multipart(upload_id)
        return stored

    def abort_multipart(self, upload_id: str) -> None:
        shutil.rmtree(self._part_dir(upload_id), ignore_errors=True)

    def sweep(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self.staging_dir.iterdir():
            if _mtime(path) < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        for folder in self._uploads.iterdir():
            newest = max([_mtime(p) for p in folder.iterdir()] + [_mtime(folder)])
            if newest < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    def old_files(self, older_than_s: float, now: float | None = None) -> Iterator[str]:
        cutoff = (time.time() if now is None else now) - older_than_s
        for path in _walk_files(self.root):
            if _mtime(path) < cutoff:
                yield path.relative_to(self.root).as_posix()


def _walk_files(root: Path) -> Iterator[Path]:
    """Stored files under ``root``; dot folders (staging, parts) are not stored files."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                yield Path(dirpath) / name


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
