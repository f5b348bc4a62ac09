"""Shared by the twin tests: run ``stillreel twin -- COMMAND``, a tiny PNG data URI, status polling."""

from __future__ import annotations

import os
import subprocess

from live_server import CLI_COMMAND, REPO


def twin(*command: str, cwd=REPO, timeout: float = 180, options=(), env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI_COMMAND, "twin", *options, "--", *command], capture_output=True, text=True,
                          cwd=REPO if cwd is None else cwd, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def png_data_uri() -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


V1 = "/queue/fal-ai/kling-video/v1/standard/image-to-video"


def wait_status(url: str, until, timeout: float = 30) -> dict:
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(url).json()
        if until(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"status never reached the condition: {status}")
