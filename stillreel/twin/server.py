"""An embedded stillreel server on a free loopback port, the environment that switches fal's
clients to it, and a per-route request count for the summary line."""

from __future__ import annotations

import collections
import os
import socket
import threading
import time
from pathlib import Path

import uvicorn

HERE = Path(__file__).resolve().parent
# Only sitecustomize.py goes on the app's PYTHONPATH, alone in its folder: with the whole twin
# package there, its server.py would shadow an app's own top-level ``server`` module.
PYTHONPATH_DIR = HERE / "pythonpath"
NO_AUTH_KEY = "stillreel"  # fal clients refuse to send requests without some key


def route_name(method: str, path: str) -> str:
    """The fal route a request is: submit, status, result, cancel, upload, run, token, file or other."""
    parts = path.strip("/").split("/")
    if parts[0] == "tokens":
        return "token"
    if path.startswith(("/storage/", "/files/upload")) or (path.startswith("/files/") and method in ("PUT", "POST")):
        return "upload"
    if "requests" in parts:
        if method == "PUT":
            return "cancel"
        return "status" if parts[-1] == "status" or parts[-2:] == ["status", "stream"] else "result"
    if method == "POST":
        return "submit" if parts[0] == "queue" else "run"
    if path.startswith("/files/"):
        return "file"
    return "other"


class RouteCounter:
    """ASGI wrapper that counts HTTP requests by fal route (after proxy rewriting is not needed:
    the twin's clients talk to it directly)."""

    def __init__(self, app):
        self.app = app
        self.counts: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/healthz":
            self.counts[route_name(scope["method"], scope["path"])] += 1
        return await self.app(scope, receive, send)

    def __getattr__(self, name):  # uvicorn and tests reach app.state through the wrapper
        return getattr(self.app, name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_env(url: str, key: str | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The variables that point unmodified fal clients (Python and Node) at ``url``."""
    base = dict(os.environ if base is None else base)
    env = {
        "STILLREEL_TWIN_URL": url,
        "STILLREEL_URL": url,
        "FAL_KEY": key or NO_AUTH_KEY,
        "PYTHONPATH": os.pathsep.join(p for p in (str(PYTHONPATH_DIR), base.get("PYTHONPATH", "")) if p),
        "NODE_OPTIONS": " ".join(p for p in (f"--import={(HERE / 'preload.mjs').as_uri()}",
                                             base.get("NODE_OPTIONS", "")) if p),
    }
    if key:
        env["STILLREEL_KEY"] = key
    return env


class EmbeddedServer:
    """uvicorn in a background thread; ``start()`` returns once it accepts connections."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None):
        self.counter = RouteCounter(app)
        self.host = host
        self.port = port or free_port()
        config = uvicorn.Config(self.counter, host=host, port=self.port, log_level="warning",
                                timeout_graceful_shutdown=5, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="stillreel-twin", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the embedded stillreel server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def summary(counts: collections.Counter, faults: collections.Counter | None = None) -> str:
    total = sum(counts.values())
    order = ["submit", "status", "result", "cancel", "upload", "run", "token", "file", "other"]
    routes = ", ".join(f"{name} {counts[name]}" for name in order if counts.get(name))
    line = f"stillreel twin: {total} requests" + (f" ({routes})" if routes else "")
    faults = faults or collections.Counter()
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(faults.items()))
    return line + f"; injected {sum(faults.values())} faults" + (f" ({kinds})" if kinds else "")
