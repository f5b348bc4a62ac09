"""A real ``stillreel serve`` subprocess on loopback, for tests that speak HTTP to it.

```python
from live_server import LiveServer

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer.start(tmp_path_factory.mktemp("srv"), auth=True) as srv:
        yield srv          # srv.url, srv.key, srv.data_dir, srv.log_text()
```

``start`` creates an API key first (``stillreel keys create``) unless ``auth=False`` (then the
server runs with ``--no-auth`` and ``key`` is None), picks a free port, and waits for ``/healthz``.
Extra CLI flags go in ``args`` (e.g. ``["--workers", "2"]``), extra environment in ``env``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
# Runs the CLI with this interpreter whether or not the console script is installed.
CLI_COMMAND = [sys.executable, "-c", "import sys; sys.argv[0] = 'stillreel'; from stillreel.cli import app; app()"]
_CLI = CLI_COMMAND  # the earlier name, still imported by tests/test_durability.py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def merged_env(env: dict | None) -> dict:
    """``os.environ`` updated with ``env``; a value of None removes that variable."""
    merged = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def cli(*args: str, env: dict | None = None, timeout: float = 60, check: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``stillreel ARGS...`` to completion and return the finished process (text mode).
    ``env`` is merged into ``os.environ`` (None removes a variable)."""
    proc = subprocess.run([*CLI_COMMAND, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=merged_env(env), input=input)
    if check and proc.returncode != 0:
        raise RuntimeError(f"stillreel {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def create_key(data_dir: Path, *extra: str, env: dict | None = None) -> str:
    """A new API key for the server whose data lives in ``data_dir`` (printed as the last line)."""
    out = cli("keys", "create", "--data-dir", str(data_dir), *extra, env=env).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError("stillreel keys create printed nothing")
    return lines[-1]


@dataclass
class LiveServer:
    url: str
    port: int
    data_dir: Path
    key: str | None
    process: subprocess.Popen
    log_path: Path
    env: dict = field(default_factory=dict)

    @classmethod
    def start(cls, data_dir: Path, *, auth: bool = True, engine: str | None = "motion",
              args: list[str] | tuple[str, ...] = (), env: dict | None = None,
              ready_timeout: float = 90.0) -> LiveServer:
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        full_env = merged_env({"PYTHONUNBUFFERED": "1", **(env or {})})
        key = create_key(data_dir, env=env) if auth else None
        port = free_port()
        command = [*CLI_COMMAND, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
        if engine:
            command += ["--engine", engine]
        if not auth:
            command.append("--no-auth")
        command += list(args)
        log_path = data_dir / "server.log"
        log = open(log_path, "wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=full_env,
                                   start_new_session=True)
        log.close()
        server = cls(f"http://127.0.0.1:{port}", port, data_dir, key, process, log_path, dict(env or {}))
        try:
            server._wait_ready(ready_timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stillreel serve exited {self.process.returncode}:\n{self.log_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"stillreel serve not ready after {timeout} s:\n{self.log_text()}")

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header for this server's key (empty without auth)."""
        return {"Authorization": f"Key {self.key}"} if self.key else {}

    def http(self, **kwargs) -> httpx.Client:
        """A plain httpx client on this server, authorized with its key."""
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=kwargs.pop("timeout", 60), **kwargs)

    def log_text(self, tail: int = 20000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)  # its own session: workers go too
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def png_bytes(width: int = 320, height: int = 240, seed: int = 0, fmt: str = "PNG") -> bytes:
    """A small procedurally made picture (gradient + shapes) so motion is visible and cheap."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)),
                    np.full_like(x, (seed * 53) % 256)], axis=-1).astype("uint8")
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 4, height // 4, width // 2, height // 2), fill=(250, 240, 20))
    draw.rectangle((width * 3 // 5, height // 2, width * 4 // 5, height * 4 // 5), fill=(20, 30, 200))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def video_facts(path: Path | str) -> dict:
    """Decode a video file fully with PyAV: codec, size, frame count, duration, audio presence."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        has_audio = bool(container.streams.audio)
        duration = float(container.duration / 1_000_000) if container.duration else None
        return {"codec": stream.codec_context.name, "width": stream.codec_context.width,
                "height": stream.codec_context.height, "frames": frames, "duration": duration,
                "audio": has_audio}


class WebhookReceiver:
    """A tiny HTTP server on loopback that records every POST (headers + raw body) it receives."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[dict] = []
        arrived = threading.Condition()
        self.received = received
        self._arrived = arrived

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with arrived:
                    received.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                     "body": body})
                    arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, predicate, timeout: float = 60.0) -> dict:
        """The first received call for which ``predicate(call)`` is true (waits for it)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for call in self.received:
                    if predicate(call):
                        return call
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching webhook within {timeout} s; got {len(self.received)} calls")
                self._arrived.wait(left)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def verify_fal_webhook(headers: dict[str, str], body: bytes, jwks: dict, max_age_s: float = 300) -> bool:
    """Check fal's webhook signature the way fal's docs tell receivers to: Ed25519 over
    ``"{request_id}\\n{user_id}\\n{timestamp}\\n{sha256_hex(body)}"``, trying every JWKS key."""
    import base64
    import hashlib

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    h = {k.lower(): v for k, v in headers.items()}
    request_id = h["x-fal-webhook-request-id"]
    user_id = h["x-fal-webhook-user-id"]
    timestamp = h["x-fal-webhook-timestamp"]
    signature = bytes.fromhex(h["x-fal-webhook-signature"])
    if abs(time.time() - int(timestamp)) > max_age_s:
        return False
    message = "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()
    for jwk in jwks.get("keys", []):
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False
