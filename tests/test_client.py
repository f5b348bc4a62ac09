"""stillreel's own client (``stillreel.client``), sync and async, against a live ``stillreel serve``;
plus its retry policy against a scripted loopback stub (only GETs and idempotent PUTs are replayed)."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import io
import json
import os
import threading
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer, free_port, png_bytes, video_facts

from stillreel.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    ConnectionFailed,
    File,
    NotFound,
    RequestCancelled,
    Result,
    ServerError,
    Status,
    ValidationError,
    WaitTimeout,
)
from stillreel.client import _http

O3 = "fal-ai/kling-video/o3/standard/image-to-video"
V1 = "fal-ai/kling-video/v1/standard/image-to-video"
V2 = "fal-ai/kling-video/v2/master/image-to-video"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer.start(tmp_path_factory.mktemp("client"), auth=True, args=["--workers", "1"]) as srv:
        yield srv


@pytest.fixture()
def client(server):
    with Client(server.url, server.key) as c:
        yield c


@pytest.fixture()
def image_path(tmp_path):
    path = tmp_path / "start.png"
    path.write_bytes(png_bytes(320, 240, seed=11))
    return path


def record_urls(client) -> list[str]:
    """Observe the (method, URL) of every request the client sends (httpx event hook)."""
    seen: list[str] = []
    http = client._http
    hook = (lambda r: _append(seen, r)) if isinstance(http, httpx.Client) else (lambda r: _aappend(seen, r))
    http.event_hooks["request"].append(hook)
    return seen


def _append(seen, request):
    seen.append(f"{request.method} {request.url}")


async def _aappend(seen, request):
    seen.append(f"{request.method} {request.url}")


def check_file(video: File, tmp_path: Path, seconds: int) -> dict:
    assert isinstance(video, File) and video.content_type == "video/mp4" and video.file_size > 0
    path = video.download(tmp_path / "out" / "video.mp4")
    assert path.stat().st_size == video.file_size
    facts = video_facts(path)
    assert facts["codec"] == "h264" and facts["frames"] > 0
    assert abs(facts["duration"] - seconds) < 0.6, facts
    return facts


# --- sync, live ---------------------------------------------------------------------------------


def test_run_uploads_a_path_input_and_returns_a_typed_video(client, server, image_path, tmp_path):
    seen = record_urls(client)
    updates: list[Status] = []
    result = client.run(O3, {"prompt": "a drifting balloon", "image_url": image_path, "duration": "3"},
                        on_update=updates.append)
    assert isinstance(result, Result) and result.request_id
    check_file(result.video, tmp_path, 3)
    # The Path went up through fal's CDN-style upload; the request then carried its URL.
    assert any(u.startswith(f"POST {server.url}/files/upload") for u in seen)
    assert updates[-1].completed and updates[-1].succeeded
    assert any(u.in_progress and u.progress is not None for u in updates)
    assert any(log.message for u in updates for log in u.logs)


def test_submit_events_status_result_and_a_handle_from_the_environment(server, image_path, tmp_path, monkeypatch):
    monkeypatch.setenv("STILLREEL_URL", server.url)
    monkeypatch.setenv("STILLREEL_KEY", server.key)
    with Client() as client:
        assert client.url == server.url
        data_uri = "data:image/png;base64," + __import__("base64").b64encode(image_path.read_bytes()).decode()
        first = client.submit(O3, {"prompt": "first", "image_url": data_uri, "duration": "3"})
        with image_path.open("rb") as stream:  # a binary file object is uploaded too
            second = client.submit(O3, {"prompt": "second", "image_url": stream, "duration": "3"})
        assert second.request_id != first.request_id

        events = list(second.events())
        assert events[0].queued and events[0].queue_position == 0, events[0]  # first is still ahead
        assert any(e.in_progress for e in events)
        progress = [e.progress for e in events if e.in_progress and e.progress is not None]
        assert progress == sorted(progress)
        assert events[-1].completed and events[-1].succeeded
        assert sum(1 for e in events if e.completed) == 1

        status = client.status(first.request_id, logs=True)
        assert status.completed and status.logs
        by_id = client.handle(first.request_id)  # default app: fal-ai/kling-video
        assert by_id.result() == first.get()
        check_file(second.result().video, tmp_path, 3)


def test_cancel_queued_and_running_then_cancel_again(client, image_path):
    args = {"prompt": "long", "image_url": image_path, "duration": "10"}
    running = client.submit(V1, args)
    queued = client.submit(V1, args)
    assert queued.status().queued
    assert queued.cancel() is True
    for status in running.events():
        if status.in_progress:
            break
    assert running.cancel() is True
    for handle in (queued, running):
        final = handle.wait(timeout=60)
        assert final.cancelled and final.error_type == "request_cancelled"
        with pytest.raises(RequestCancelled) as err:
            handle.result()
        assert err.value.error_type == "request_cancelled"
        assert handle.cancel() is False  # already completed


def test_run_past_its_timeout_cancels_the_request(client, image_path):
    seen = record_urls(client)
    with pytest.raises(WaitTimeout) as err:
        client.run(V1, {"prompt": "too long to wait for", "image_url": image_path, "duration": "10"}, timeout=0.5)
    request_id = err.value.request_id
    assert request_id and any(u.startswith("PUT ") and u.endswith(f"/requests/{request_id}/cancel") for u in seen)
    assert client.wait(request_id, timeout=60).cancelled


def test_errors_carry_the_servers_detail(client, server, image_path):
    with pytest.raises(ValidationError) as err:
        client.submit(V2, {"prompt": "x", "image_url": image_path, "duration": "7"})
    assert err.value.status_code == 422
    assert err.value.field_errors[0]["loc"] == ["body", "duration"]
    assert "body.duration" in str(err.value)

    unknown = "00000000-0000-0000-0000-000000000000"
    for call in (client.status, client.result, client.cancel):
        with pytest.raises(NotFound):
            call(unknown)
    with pytest.raises(NotFound):
        client.submit("fal-ai/kling-video/v9/nothing/image-to-video", {"prompt": "x"})

    with Client(server.url, "wrong:key") as bad, pytest.raises(AuthenticationError) as err:
        bad.status(unknown)
    assert err.value.status_code == 401

    with Client(f"http://127.0.0.1:{free_port()}", retries=2) as nowhere, pytest.raises(ConnectionFailed):
        nowhere.status(unknown)


def test_upload_bytes_path_and_file_object(client, image_path):
    url = client.upload(b"plain bytes", content_type="text/plain")
    assert httpx.get(url, timeout=30).content == b"plain bytes"
    url = client.upload(image_path)
    response = httpx.get(url, timeout=30)
    assert response.content == image_path.read_bytes()
    assert response.headers["content-type"] == "image/png"
    url = client.upload(io.BytesIO(b"from a stream"), file_name="s.txt")
    assert httpx.get(url, timeout=30).content == b"from a stream"


def test_upload_over_100_mib_goes_multipart(client, server, tmp_path):
    path = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(101):
            block = os.urandom(MiB)
            digest.update(block)
            f.write(block)
    seen = record_urls(client)
    url = client.upload(path)
    parts = [u for u in seen if u.startswith("PUT ") and "/multipart/" in u]
    assert len(parts) == 11 and any(u.endswith("/complete") for u in seen)
    got = hashlib.sha256()
    with httpx.stream("GET", url, timeout=120) as response:
        for chunk in response.iter_bytes(MiB):
            got.update(chunk)
    assert got.hexdigest() == digest.hexdigest()


# --- async, live --------------------------------------------------------------------------------


def test_async_run_events_cancel_and_upload(server, image_path, tmp_path, monkeypatch):
    monkeypatch.setattr(_http, "MULTIPART_THRESHOLD", 4 * MiB)  # exercise the parts path with 3 parts
    monkeypatch.setattr(_http, "PART_SIZE", 2 * MiB)
    blob = os.urandom(5 * MiB)

    async def flow():
        async with AsyncClient(server.url, server.key) as client:
            updates = []
            result = await client.run(O3, {"prompt": "async", "image_url": image_path, "duration": "3"},
                                      on_update=updates.append)
            running = await client.submit(V1, {"prompt": "long", "image_url": image_path, "duration": "10"})
            queued = await client.submit(V1, {"prompt": "long", "image_url": image_path, "duration": "10"})
            assert await queued.cancel() is True
            async for status in running.events():
                if status.in_progress:
                    break
            assert await running.cancel() is True
            finals = [await queued.wait(timeout=60), await running.wait(timeout=60)]
            with pytest.raises(RequestCancelled):
                await running.result()
            seen = record_urls(client)
            url = await client.upload(blob, content_type="application/octet-stream")
            await result.video.download_async(tmp_path / "async.mp4")
            return updates, result, finals, seen, url

    updates, result, finals, seen, url = asyncio.run(flow())
    assert updates[-1].succeeded and any(u.in_progress for u in updates)
    assert video_facts(tmp_path / "async.mp4")["frames"] > 0
    assert all(f.cancelled for f in finals)
    assert sum(1 for u in seen if u.startswith("PUT ") and "/multipart/" in u) == 3
    assert httpx.get(url, timeout=60).content == blob


# --- retry policy (scripted stub) -----------------------------------------------------------------


class Scripted:
    """A loopback HTTP stub answering each request with the next scripted (status, body)."""

    def __init__(self, script: list[tuple[int, dict]]):
        self.script = list(script)
        self.calls: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.calls.append(f"{self.command} {self.path}")
                status, body = outer.script.pop(0) if outer.script else (500, {"detail": "script ended"})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_gets_are_retried_on_503_but_a_submit_is_never_replayed():
    stub = Scripted([(503, {"detail": "busy"}), (200, {"status": "IN_QUEUE", "queue_position": 2}),
                     (503, {"detail": "busy"})])
    try:
        with Client(stub.url, "k:s", retries=3) as client:
            status = client.status("r1")
            assert status.queued and status.queue_position == 2
            with pytest.raises(ServerError) as err:
                client.submit(V2, {"prompt": "x", "image_url": "https://example.com/a.png"})
            assert err.value.detail == "busy"
        assert stub.calls == [
            "GET /queue/fal-ai/kling-video/requests/r1/status?logs=0",
            "GET /queue/fal-ai/kling-video/requests/r1/status?logs=0",
            f"POST /queue/{V2}",
        ]
    finally:
        stub.close()


def test_a_server_without_an_event_stream_is_polled():
    stub = Scripted([(200, {"status": "IN_PROGRESS"}),  # the stream route answers JSON, not SSE
                     (202, {"status": "IN_PROGRESS", "logs": [{"message": "half"}], "progress": 50}),
                     (200, {"status": "COMPLETED", "logs": [], "metrics": {"inference_time": 1.5}})])
    try:
        with Client(stub.url, "k:s", poll_interval=0.01) as client:
            events = list(client.events("r2"))
        assert [e.state for e in events] == ["IN_PROGRESS", "COMPLETED"]
        assert events[0].progress == 50 and events[0].logs[0].message == "half"
        assert events[1].succeeded and events[1].metrics == {"inference_time": 1.5}
        assert stub.calls == ["GET /queue/fal-ai/kling-video/requests/r2/status/stream?logs=1",
                              "GET /queue/fal-ai/kling-video/requests/r2/status?logs=1",
                              "GET /queue/fal-ai/kling-video/requests/r2/status?logs=1"]
    finally:
        stub.close()
