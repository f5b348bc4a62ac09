"""The app's own test suite: no stillreel in sight; run it under `stillreel twin -- pytest`."""

import io

import httpx
from PIL import Image

import app


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 90, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_clip_from_uploaded_image():
    url = app.upload_then_clip(_png())
    video = httpx.get(url, timeout=30)
    assert video.status_code == 200
    assert video.content[4:8] == b"ftyp"
