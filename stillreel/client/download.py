"""Downloading an output file to disk: a temporary sibling, retried on transport errors, renamed."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import httpx

from stillreel.client._http import backoff, connection_failed, user_agent
from stillreel.client.errors import ConnectionFailed, error_from_response


def temp_sibling(path: Path) -> tuple[int, Path]:
    """A temporary file next to ``path`` so the final rename stays on one filesystem."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # mkstemp makes 0600; the finished file should look like any other
    return fd, Path(name)



def _check_size(tmp: Path, expected: int | None, url: str) -> None:
    if expected is not None and tmp.stat().st_size != expected:
        raise ConnectionFailed(f"download of {url} ended after {tmp.stat().st_size} of {expected} bytes")


def download_to(url: str, path: Path, *, timeout: float, expected_size: int | None) -> Path:
    attempts = 4
    for attempt in range(attempts):
        fd, tmp = temp_sibling(path)
        try:
            with os.fdopen(fd, "wb") as out, httpx.Client(timeout=timeout, follow_redirects=True,
                                                           headers={"User-Agent": user_agent()}) as http:
                with http.stream("GET", url) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise error_from_response(response)
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
            _check_size(tmp, expected_size, url)
            os.replace(tmp, path)
            return path
        except httpx.TransportError as exc:
            tmp.unlink(missing_ok=True)
            if attempt + 1 >= attempts:
                raise connection_failed(url, exc) from exc
            time.sleep(backoff(attempt))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    raise AssertionError("unreachable")


async def download_to_async(url: str, path: Path, *, timeout: float, expected_size: int | None) -> Path:
    attempts = 4
    for attempt in range(attempts):
        fd, tmp = temp_sibling(path)
        try:
            with os.fdopen(fd, "wb") as out:
                async with httpx.AsyncClient(timeout=timeout, follow_redirects=True,
                                             headers={"User-Agent": user_agent()}) as http:
                    async with http.stream("GET", url) as response:
                        if response.status_code >= 400:
                            await response.aread()
                            raise error_from_response(response)
                        async for chunk in response.aiter_bytes(1 << 20):
                            out.write(chunk)
            _check_size(tmp, expected_size, url)
            os.replace(tmp, path)
            return path
        except httpx.TransportError as exc:
            tmp.unlink(missing_ok=True)
            if attempt + 1 >= attempts:
                raise connection_failed(url, exc) from exc
            await asyncio.sleep(backoff(attempt))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    raise AssertionError("unreachable")
