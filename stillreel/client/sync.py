"""The synchronous client.

```python
from stillreel.client import Client

with Client("http://127.0.0.1:8000", key="KEY_ID:SECRET") as client:
    result = client.run(
        "fal-ai/kling-video/v2/master/image-to-video",
        {"prompt": "a boat drifts", "image_url": Path("boat.png"), "duration": "5"},
        on_update=print,
    )
    result.video.download("boat.mp4")
```
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import httpx
from httpx_sse import SSEError, connect_sse

from stillreel.client import _http as h
from stillreel.client.errors import APIError, NotFound, WaitTimeout, error_from_response
from stillreel.client.types import Result, Status

UpdateCallback = Callable[[Status], None]


class Client:
    """A stillreel (or fal-compatible) server. ``url`` / ``key`` default to ``STILLREEL_URL`` /
    ``STILLREEL_KEY``. Thread-safe; close it (or use ``with``) to release connections."""

    def __init__(self, url: str | None = None, key: str | None = None, *, timeout: float = 120.0,
                 retries: int = 5, poll_interval: float = 0.5):
        self.url = h.resolve_url(url)
        self.key = h.resolve_key(key)
        self.routes = h.Routes(self.url)
        self.retries = retries
        self.poll_interval = poll_interval
        self._http = httpx.Client(headers=h.headers(self.key), timeout=httpx.Timeout(timeout, connect=15.0))
        self._token: dict | None = None
        self._token_lock = threading.Lock()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing -----------------------------------------------------------------------------

    def _send(self, method: str, url: str, *, safe: bool, **kwargs) -> httpx.Response:
        """Send with the retry policy of ``_http``; raise ``APIError`` for any status >= 400."""
        for attempt in range(self.retries):
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if not h.should_retry(safe, attempt, self.retries, exc, None):
                    raise h.connection_failed(url, exc) from exc
                time.sleep(h.backoff(attempt))
                continue
            if response.status_code < 400:
                return response
            if not h.should_retry(safe, attempt, self.retries, None, response):
                raise error_from_response(response)
            time.sleep(h.backoff(attempt, response))
        raise AssertionError("unreachable")

    def _json(self, method: str, url: str, *, safe: bool, **kwargs) -> Any:
        return self._send(method, url, safe=safe, **kwargs).json()

    # --- queue ---------------------------------------------------------------------------------

    def submit(self, endpoint_id: str, arguments: dict, *, webhook_url: str | None = None,
               priority: str | None = None, headers: dict[str, str] | None = None) -> RequestHandle:
        """Queue a request and return its handle. Paths, bytes and binary files among the
        arguments are uploaded first and replaced by their URLs; strings (data URIs too) pass as is."""
        arguments = h.walk_uploads(arguments, self.upload)
        params = {"fal_webhook": webhook_url} if webhook_url else None
        extra = dict(headers or {})
        if priority:
            extra["X-Fal-Queue-Priority"] = priority
        data = self._json("POST", self.routes.submit(endpoint_id), safe=False, json=arguments,
                          params=params, headers=extra)
        return RequestHandle(self, endpoint_id, data["request_id"], data.get("queue_position"))

    def handle(self, request_id: str, endpoint_id: str = h.DEFAULT_APP) -> RequestHandle:
        """A handle on a request submitted earlier (by this process or any other)."""
        return RequestHandle(self, endpoint_id, request_id)

    def status(self, request_id: str, *, endpoint_id: str = h.DEFAULT_APP, logs: bool = False) -> Status:
        data = self._json("GET", self.routes.status(endpoint_id, request_id), safe=True,
                          params={"logs": "1" if logs else "0"})
        return Status.from_json(data)

    def events(self, request_id: str, *, endpoint_id: str = h.DEFAULT_APP, logs: bool = True) -> Iterator[Status]:
        """Each status change from the server's SSE stream, ending with COMPLETED.

        A dropped stream is reopened (it is a GET; log lines may then repeat); a server without the
        stream route is polled instead.
        """
        url = self.routes.stream(endpoint_id, request_id)
        params = {"logs": "1" if logs else "0"}
        attempt = 0
        while True:
            retry_in = None
            try:
                with connect_sse(self._http, "GET", url, params=params,
                                 timeout=httpx.Timeout(60.0, connect=15.0)) as source:
                    response = source.response
                    if response.status_code >= 400:
                        response.read()
                        error = error_from_response(response)
                        if isinstance(error, NotFound) or error.status_code == 405:
                            # Unknown request → the status call raises the real 404; else no SSE route.
                            yield from self._poll(request_id, endpoint_id, logs)
                            return
                        if not h.should_retry(True, attempt, self.retries, None, response):
                            raise error
                        retry_in = h.backoff(attempt, response)
                    else:
                        attempt = 0  # connected: a later read timeout on a quiet stream is no failure
                        for event in source.iter_sse():
                            if not event.data:
                                continue
                            status = Status.from_json(event.json())
                            yield status
                            if status.completed:
                                return
            except SSEError:  # answered, but not as an event stream: fall back to polling
                yield from self._poll(request_id, endpoint_id, logs)
                return
            except httpx.TransportError as exc:
                if not h.should_retry(True, attempt, self.retries, exc, None):
                    raise h.connection_failed(url, exc) from exc
                retry_in = h.backoff(attempt)
            if retry_in is not None:
                time.sleep(retry_in)
                attempt += 1
                continue
            # The stream ended without COMPLETED (a server restart, a proxy cutting idle streams).
            status = self.status(request_id, endpoint_id=endpoint_id, logs=logs)
            if status.completed:
                yield status
                return
            time.sleep(self.poll_interval)

    def _poll(self, request_id: str, endpoint_id: str, logs: bool) -> Iterator[Status]:
        while True:
            status = self.status(request_id, endpoint_id=endpoint_id, logs=logs)
            yield status
            if status.completed:
                return
            time.sleep(self.poll_interval)

    def wait(self, request_id: str, *, endpoint_id: str = h.DEFAULT_APP, on_update: UpdateCallback | None = None,
             timeout: float | None = None, logs: bool = True) -> Status:
        """Block until the request completes; returns the final status (which may carry an error)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # With a deadline, poll: a blocking SSE read could outlast it while the request sits quiet.
        stream = (self.events(request_id, endpoint_id=endpoint_id, logs=logs) if deadline is None
                  else self._poll(request_id, endpoint_id, logs))
        try:
            for status in stream:
                if on_update:
                    on_update(status)
                if status.completed:
                    return status
                if deadline is not None and time.monotonic() > deadline:
                    raise WaitTimeout(f"request {request_id} did not complete within {timeout} s", request_id)
        finally:
            stream.close()
        raise WaitTimeout(f"the status stream of {request_id} ended early", request_id)

    def result(self, request_id: str, *, endpoint_id: str = h.DEFAULT_APP) -> Result:
        """The output of a completed request; raises the request's error (``RequestCancelled``,
        ``ValidationError`` …) when it failed."""
        response = self._send("GET", self.routes.request(endpoint_id, request_id), safe=True)
        return Result(response.headers.get("x-fal-request-id") or request_id, response.json())

    def cancel(self, request_id: str, *, endpoint_id: str = h.DEFAULT_APP) -> bool:
        """Ask the server to cancel. True: the request will end cancelled; False: it had already
        completed. Raises ``NotFound`` for an unknown id."""
        try:
            self._send("PUT", self.routes.cancel(endpoint_id, request_id), safe=True)
        except APIError as exc:
            if exc.status_code == 400 and isinstance(exc.body, dict) and exc.body.get("status") == "ALREADY_COMPLETED":
                return False
            raise
        return True

    def run(self, endpoint_id: str, arguments: dict, *, on_update: UpdateCallback | None = None,
            timeout: float | None = None, webhook_url: str | None = None) -> Result:
        """Submit through the queue, wait, return the result. Should the wait be interrupted
        (Ctrl-C, ``timeout``), the request is cancelled on the server before the error propagates."""
        handle = self.submit(endpoint_id, arguments, webhook_url=webhook_url)
        try:
            handle.wait(on_update=on_update, timeout=timeout)
        except (KeyboardInterrupt, WaitTimeout):
            try:
                handle.cancel()
            except Exception:  # the original interruption matters more than a failed cancel
                pass
            raise
        return handle.result()

    def run_direct(self, endpoint_id: str, arguments: dict) -> Result:
        """fal's synchronous path (``POST /{endpoint_id}``): one HTTP call held open until the
        video is ready. Prefer ``run`` for anything long."""
        arguments = h.walk_uploads(arguments, self.upload)
        response = self._send("POST", self.routes.run(endpoint_id), safe=False, json=arguments,
                              timeout=httpx.Timeout(None, connect=15.0))
        return Result(response.headers.get("x-fal-request-id"), response.json())

    # --- storage -------------------------------------------------------------------------------

    def _upload_token(self) -> dict:
        with self._token_lock:
            if h.token_expired(self._token):
                self._token = self._json("POST", self.routes.token, safe=False, json={})
            return self._token

    def upload(self, source: bytes | str | os.PathLike | BinaryIO, *, content_type: str | None = None,
               file_name: str | None = None) -> str:
        """Store bytes, a file (by path) or a binary file object on the server; returns its URL.
        Files over 100 MiB go up in 10 MiB parts, several at a time."""
        src = h.upload_source(source, content_type, file_name)
        token = self._upload_token()
        base = str(token.get("base_url") or self.url).rstrip("/")
        headers = h.upload_headers(token, src)
        if src.size <= h.MULTIPART_THRESHOLD:
            data = self._json("POST", f"{base}/files/upload", safe=False, content=src.read_all(), headers=headers)
            return data["access_url"]
        return self._upload_parts(base, headers, src)

    def _upload_parts(self, base: str, headers: dict, src: h.UploadSource) -> str:
        started = self._json("POST", f"{base}/files/upload/multipart", safe=False, headers=headers)
        file_url, upload_id = started["access_url"], started["uploadId"]
        part_headers = {k: v for k, v in headers.items() if k != "X-Fal-File-Name"}

        def put(part: tuple[int, int, int]) -> dict:
            number, offset, length = part
            response = self._send("PUT", f"{file_url}/multipart/{upload_id}/{number}", safe=True,
                                  content=src.read_part(offset, length), headers=part_headers)
            etag = response.headers.get("etag")
            if not etag:
                raise APIError(response.status_code, f"part {number} was stored without an ETag")
            return {"partNumber": number, "etag": etag}

        with ThreadPoolExecutor(h.PART_CONCURRENCY) as pool:
            done = list(pool.map(put, h.parts(src.size)))
        self._send("POST", f"{file_url}/multipart/{upload_id}/complete", safe=False,
                   json={"parts": done}, headers={"Authorization": headers["Authorization"]})
        return file_url


class RequestHandle:
    """A queued request: poll it, stream its status, wait for it, fetch its result, cancel it."""

    def __init__(self, client: Client, endpoint_id: str, request_id: str, queue_position: int | None = None):
        self.client = client
        self.endpoint_id = endpoint_id
        self.request_id = request_id
        self.queue_position = queue_position

    def __repr__(self) -> str:
        return f"RequestHandle({self.endpoint_id!r}, {self.request_id!r})"

    def status(self, *, logs: bool = False) -> Status:
        return self.client.status(self.request_id, endpoint_id=self.endpoint_id, logs=logs)

    def events(self, *, logs: bool = True) -> Iterator[Status]:
        return self.client.events(self.request_id, endpoint_id=self.endpoint_id, logs=logs)

    def wait(self, *, on_update: UpdateCallback | None = None, timeout: float | None = None,
             logs: bool = True) -> Status:
        return self.client.wait(self.request_id, endpoint_id=self.endpoint_id, on_update=on_update,
                                timeout=timeout, logs=logs)

    def result(self) -> Result:
        return self.client.result(self.request_id, endpoint_id=self.endpoint_id)

    def get(self, *, on_update: UpdateCallback | None = None, timeout: float | None = None) -> Result:
        """Wait for completion, then return the result (or raise the request's error)."""
        self.wait(on_update=on_update, timeout=timeout)
        return self.result()

    def cancel(self) -> bool:
        return self.client.cancel(self.request_id, endpoint_id=self.endpoint_id)
