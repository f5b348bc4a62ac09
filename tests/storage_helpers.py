"""Shared by the storage and input tests: a minimal app with the storage router, served by a real
uvicorn on loopback in a thread, and small pictures made in memory."""

from __future__ import annotations

import io
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI
from PIL import Image

from stillreel.api import storage as storage_api
from stillreel.api.services import Services
from stillreel.config import Limits, Settings
from stillreel.storage import Storage


class Served:
    def __init__(self, app: FastAPI, url: str, key: str | None):
        self.app = app
        self.url = url
        self.key = key

    @property
    def storage(self) -> Storage:
        return self.app.state.services.storage

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.key}"} if self.key else {}


def build_app(data_dir: Path, storage: Storage, *, auth: bool = True, limits: Limits | None = None,
              public_url: str | None = None) -> tuple[FastAPI, str | None]:
    """The storage router on its own, with the app's own wiring: one ``Services`` (built as
    ``create_app`` builds it, on ``storage``; no workers), kept as ``app.state.services``."""
    settings = Settings(data_dir=data_dir, auth=auth, limits=limits or Limits(), public_url=public_url, workers=0)
    services = Services(settings, storage=storage)
    app = FastAPI()
    app.include_router(storage_api.router)
    app.state.services = services
    return app, (services.keys.create("tests") if auth else None)


@contextmanager
def serve(app: FastAPI, key: str | None = None):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Served(app, f"http://127.0.0.1:{port}", key)
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.services.store.close()


def picture(width: int = 64, height: int = 48, fmt: str = "PNG", mode: str = "RGB", **save) -> bytes:
    """A gradient picture: left-to-right red ramp, top-to-bottom green ramp."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), np.full_like(x, 90)], -1)
    image = Image.fromarray(rgb.astype(np.uint8)).convert(mode)
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def encode(image: Image.Image, fmt: str = "PNG", **save) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()
