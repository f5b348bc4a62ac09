"""What the client hands back: request statuses, log lines, results and output files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stillreel.client.download import download_to, download_to_async
from stillreel.client.states import CANCELLED_ERROR_TYPE, COMPLETED, IN_PROGRESS, IN_QUEUE


@dataclass(frozen=True)
class Log:
    message: str
    level: str = "INFO"
    source: str = "USER"
    timestamp: str | None = None

    @classmethod
    def from_json(cls, data: dict) -> Log:
        return cls(
            message=str(data.get("message", "")),
            level=str(data.get("level") or "INFO"),
            source=str(data.get("source") or "USER"),
            timestamp=data.get("timestamp"),
        )


@dataclass(frozen=True)
class Status:
    """One status snapshot of a queued request, as the server reported it.

    ``state`` is fal's ``IN_QUEUE``, ``IN_PROGRESS`` or ``COMPLETED``. A request that failed or
    was cancelled is ``COMPLETED`` with ``error`` / ``error_type`` set (fal's convention).
    ``logs`` are the lines sent with this status: from ``events()`` only the new ones, from
    ``status(logs=True)`` all of them so far.
    """

    state: str
    request_id: str | None = None
    queue_position: int | None = None
    progress: float | None = None  # 0..100 while IN_PROGRESS, when the server reports it
    logs: tuple[Log, ...] = ()
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict) -> Status:
        position = data.get("queue_position")
        progress = data.get("progress")
        return cls(
            state=str(data.get("status")),
            request_id=data.get("request_id"),
            queue_position=int(position) if position is not None else None,
            progress=float(progress) if progress is not None else None,
            logs=tuple(Log.from_json(item) for item in data.get("logs") or () if isinstance(item, dict)),
            metrics=dict(data.get("metrics") or {}),
            error=data.get("error"),
            error_type=data.get("error_type"),
            raw=data,
        )

    @property
    def queued(self) -> bool:
        return self.state == IN_QUEUE

    @property
    def in_progress(self) -> bool:
        return self.state == IN_PROGRESS

    @property
    def completed(self) -> bool:
        return self.state == COMPLETED

    @property
    def succeeded(self) -> bool:
        return self.completed and self.error is None and self.error_type is None

    @property
    def cancelled(self) -> bool:
        return self.completed and self.error_type == CANCELLED_ERROR_TYPE


@dataclass(frozen=True)
class File:
    """A file the server produced (fal's ``File``): only ``url`` is guaranteed."""

    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None

    @classmethod
    def from_json(cls, data: dict) -> File:
        size = data.get("file_size")
        return cls(
            url=str(data["url"]),
            content_type=data.get("content_type"),
            file_name=data.get("file_name"),
            file_size=int(size) if size is not None else None,
        )

    def download(self, path: str | os.PathLike, *, timeout: float = 120.0) -> Path:
        """Save the file to ``path`` (written to a temporary name, then renamed). Returns the path.

        The file URL is fetched without credentials: stillreel's file URLs are public, as fal's are,
        and the URL may point at another host (an S3 presigned URL) that must not see the key.
        """
        return download_to(self.url, Path(path), timeout=timeout, expected_size=self.file_size)

    async def download_async(self, path: str | os.PathLike, *, timeout: float = 120.0) -> Path:
        return await download_to_async(self.url, Path(path), timeout=timeout, expected_size=self.file_size)


@dataclass(frozen=True)
class Result:
    """A finished request's output: the model's JSON plus typed access to its video."""

    request_id: str | None
    data: dict[str, Any]

    @property
    def video(self) -> File | None:
        video = self.data.get("video")
        return File.from_json(video) if isinstance(video, dict) and "url" in video else None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


__all__ = [
    "COMPLETED",
    "IN_PROGRESS",
    "IN_QUEUE",
    "File",
    "Log",
    "Result",
    "Status",
]
