"""Small helpers shared by the HTTP API tests."""

from __future__ import annotations

import base64
import io
import time

import httpx
import numpy as np
from PIL import Image

V2 = "fal-ai/kling-video/v2/master/image-to-video"
V1 = "fal-ai/kling-video/v1/standard/image-to-video"
O3 = "fal-ai/kling-video/o3/standard/image-to-video"
APP = "fal-ai/kling-video"


def png_bytes(width: int = 96, height: int = 64, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


IMAGE = data_uri(png_bytes())


def submit(client: httpx.Client, endpoint: str = V2, prompt: str = "frames=6", headers=None, params=None, **fields):
    body = {"prompt": prompt, "image_url": IMAGE, **fields}
    r = client.post(f"/queue/{endpoint}", json=body, headers=headers or {}, params=params or {})
    assert r.status_code == 200, r.text
    return r.json()


def wait(client: httpx.Client, submitted: dict, until=("COMPLETED",), timeout: float = 60, logs: bool = False) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(submitted["status_url"], params={"logs": "1" if logs else "0"}).json()
        if status["status"] in until:
            return status
        time.sleep(0.05)
    raise AssertionError(f"still {status} after {timeout} s")
