"""The asyncio client: the same calls as ``stillreel.client.Client``, awaitable.

```python
async with AsyncClient() as client:           # STILLREEL_URL / STILLREEL_KEY
    handle = await client.submit(endpoint_id, {"prompt": "…", "image_url": Path("in.png")})
    async for status in handle.events():
        print(status.state, status.progress)
    result = await handle.result()
    await result.video.download_async("out.mp4")
```
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, BinaryIO

import httpx
from httpx_sse import SSEError, aconnect_sse

from stillreel.client import _http as h
from stillreel.client.errors import APIError, NotFound, WaitTimeout, error_from_response
from stillreel.client.types import Result, Status

UpdateCallback = Callable[[Status], "Awaitable[None] | None"]


class AsyncClient:
    def __init__(self, url: str | None = None, key: str | None = None, *, timeout: float = 120.0,
                 retries: int = 5, poll_interval: float = 0.5):
        self.url = h.resolve_url(url)
        self.key = h.resolve_key(key)
        self.routes = h.Routes(self.url)
        self.retries = retries
        self.poll_interval = poll_interval
        self._http = httpx.AsyncClient(headers=h.headers(self.key), timeout=httpx.Timeout(timeout, connect=15.0))
        self._token: dict | None = None
        self._token_lock = asyncio.Lock()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, url: str, *, safe: bool, **kwargs) -> httpx.Response:
        for attempt in range(self.retries):
            try:
                response = await self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if not h.should_retry(safe, attempt, self.retries, exc, None):
                    raise h.connection_failed(url, exc) from exc
                await asyncio.sleep(h.backoff(attempt))
                continue
            if response.status_code < 400:
                return response
            if not h.should_retry(safe, attempt, self.retries, None, response):
                raise error_from_response(response)
            await asyncio.sleep(h.backoff(attempt, response))
        raise AssertionError("unreachable")

    async def _json(self, method: str, url: str, *, safe: bool, **kwargs) -> Any:
        return (await self._send(method, url, safe=safe, **kwargs)).json()

    # --- queue ---------------------------------------------------------------------------------

    async def submit(self, endpoint_id: str, arguments: dict, *, webhook_url: str | None = None,
                     priority: str | None = None, headers: dict[str, str] | None = None) -> AsyncRequestHandle:
        arguments = await h.walk_uploads_async(arguments, self.upload)
        params = {"fal_webhook": webhook_url} if webhook_url else None
        extra = dict(headers or {})
        if priority:
            extra["X-Fal-Queue-Priority"] = priority
        data = await self._json("POST", self.routes.submit(endpoint_id), safe=False, json=arguments,
                                params=params, headers=extra)
        return AsyncRequestHandle(self, endpoint_id, data["request_id"], data.get("queue_position"))

    def handle(self, request_id: str, endpoint_id: str = h.DEFAULT_APP) -> AsyncRequestHandle:
        return AsyncRequestHandle(self, endpoint_id, request_id)

    async def status(self, request_id: str, *, endpoint_id: str = h.DEFAULT_APP, logs: bool = False) -> Status:
        data = await self._json("GET", self.routes.status(endpoint_id, request_id), safe=True,
                                params={"logs": "1" if logs else "0"})
        return Status.from_json(data)

    async def events(self, request_id: str, *, endpoint_id: str = h.DEFAULT_APP,
                     logs: bool = True) -> AsyncIterator[Status]:
        """Each status change from the SSE stream, ending with COMPLETED (see ``Client.events``)."""
        url = self.routes.stream(endpoint_id, request_id)
        params = {"logs": "1" if logs else "0"}
        attempt = 0
        while True:
            retry_in = None
            try:
                async with aconnect_sse(self._http, "GET", url, params=params,
                                        timeout=httpx.Timeout(60.0, connect=15.0)) as source:
                    response = source.response
                    if response.status_code >= 400:
                        await response.aread()
                        error = error_from_response(response)
                        if isinstance(error, NotFound) or error.status_code == 405:
                            async for status in self._poll(request_id, endpoint_id, logs):
                                yield status
                            return
                        if not h.should_retry(True, attempt, self.retries, None, response):
                            raise error
                        retry_in = h.backoff(attempt, response)
                    else:
                        attempt = 0  # connected: a later read timeout on a quiet stream is no failure
                        async for event in source.aiter_sse():
                            if not event.data:
                                continue
                            status = Status.from_json(event.json())
                            yield status
                            if status.completed:
                                return
            except SSEError:  # answered, but not as an event stream: fall back to polling
                async for status in self._poll(request_id, endpoint_id, logs):
                    yield status
                return
            except httpx.TransportError as exc:
                if not h.should_retry(True, attempt, self.retries, exc, None):
                    raise h.connection_failed(url, exc) from exc
                retry_in = h.backoff(attempt)
            if retry_in is not None:
                await asyncio.sleep(retry_in)
                attempt += 1
                continue
            status = await self.status(request_id, endpoint_id=endpoint_id, logs=logs)
            if status.completed:
                yield status
                return
            await asyncio.sleep(self.poll_interval)

    async def _poll(self, request_id: str, endpoint_id: str, logs: bool) -> AsyncIterator[Status]:
        while True:
            status = await self.status(request_id, endpoint_id=endpoint_id, logs=logs)
            yield status
            if status.completed:
                return
            await asyncio.sleep(self.poll_interval)

    async def wait(self, request_id: str, *, endpoint_id: str = h.DEFAULT_APP,
                   on_update: UpdateCallback | None = None, timeout: float | None = None,
                   logs: bool = True) -> Status:
        async def follow() -> Status:
            stream = self.events(request_id, endpoint_id=endpoint_id, logs=logs)
            try:
                async for status in stream:
                    if on_update:
                        maybe = on_update(status)
                        if asyncio.iscoroutine(maybe):
                            await maybe
                    if status.completed:
                        return status
            finally:
                await stream.aclose()
            raise WaitTimeout(f"the status stream of {request_id} ended early", request_id)

        try:
            return await asyncio.wait_for(follow(), timeout)
        except asyncio.TimeoutError:
            raise WaitTimeout(f"request {request_id} did not complete within {timeout} s", request_id) from None

    async def result(self, request_id: str, *, endpoint_id: str = h.DEFAULT_APP) -> Result:
        response = await self._send("GET", self.routes.request(endpoint_id, request_id), safe=True)
        return Result(response.headers.get("x-fal-request-id") or request_id, response.json())

    async def cancel(self, request_id: str, *, endpoint_id: str = h.DEFAULT_APP) -> bool:
        try:
            await self._send("PUT", self.routes.cancel(endpoint_id, request_id), safe=True)
        except APIError as exc:
            if exc.status_code == 400 and isinstance(exc.body, dict) and exc.body.get("status") == "ALREADY_COMPLETED":
                return False
            raise
        return True

    async def run(self, endpoint_id: str, arguments: dict, *, on_update: UpdateCallback | None = None,
                  timeout: float | None = None, webhook_url: str | None = None) -> Result:
        """Submit, wait, return the result; a timeout or a cancelled task cancels the request."""
        handle = await self.submit(endpoint_id, arguments, webhook_url=webhook_url)
        try:
            await handle.wait(on_update=on_update, timeout=timeout)
        except (asyncio.CancelledError, KeyboardInterrupt, WaitTimeout):
            try:
                await asyncio.shield(handle.cancel())
            except Exception:
                pass
            raise
        return await handle.result()

    async def run_direct(self, endpoint_id: str, arguments: dict) -> Result:
        arguments = await h.walk_uploads_async(arguments, self.upload)
        response = await self._send("POST", self.routes.run(endpoint_id), safe=False, json=arguments,
                                    timeout=httpx.Timeout(None, connect=15.0))
        return Result(response.headers.get("x-fal-request-id"), response.json())

    # --- storage -------------------------------------------------------------------------------

    async def _upload_token(self) -> dict:
        async with self._token_lock:
            if h.token_expired(self._token):
                self._token = await self._json("POST", self.routes.token, safe=False, json={})
            return self._token

    async def upload(self, source: bytes | str | os.PathLike | BinaryIO, *, content_type: str | None = None,
                     file_name: str | None = None) -> str:
        src = h.upload_source(source, content_type, file_name)
        token = await self._upload_token()
        base = str(token.get("base_url") or self.url).rstrip("/")
        headers = h.upload_headers(token, src)
        if src.size <= h.MULTIPART_THRESHOLD:
            body = await asyncio.to_thread(src.read_all)
            data = await self._json("POST", f"{base}/files/upload", safe=False, content=body, headers=headers)
            return data["access_url"]
        return await self._upload_parts(base, headers, src)

    async def _upload_parts(self, base: str, headers: dict, src: h.UploadSource) -> str:
        started = await self._json("POST", f"{base}/files/upload/multipart", safe=False, headers=headers)
        file_url, upload_id = started["access_url"], started["uploadId"]
        part_headers = {k: v for k, v in headers.items() if k != "X-Fal-File-Name"}
        gate = asyncio.Semaphore(h.PART_CONCURRENCY)

        async def put(number: int, offset: int, length: int) -> dict:
            async with gate:
                body = await asyncio.to_thread(src.read_part, offset, length)
                response = await self._send("PUT", f"{file_url}/multipart/{upload_id}/{number}", safe=True,
                                            content=body, headers=part_headers)
            etag = response.headers.get("etag")
            if not etag:
                raise APIError(response.status_code, f"part {number} was stored without an ETag")
            return {"partNumber": number, "etag": etag}

        done = await asyncio.gather(*(put(*p) for p in h.parts(src.size)))
        await self._send("POST", f"{file_url}/multipart/{upload_id}/complete", safe=False,
                         json={"parts": list(done)}, headers={"Authorization": headers["Authorization"]})
        return file_url


class AsyncRequestHandle:
    def __init__(self, client: AsyncClient, endpoint_id: str, request_id: str, queue_position: int | None = None):
        self.client = client
        self.endpoint_id = endpoint_id
        self.request_id = request_id
        self.queue_position = queue_position

    def __repr__(self) -> str:
        return f"AsyncRequestHandle({self.endpoint_id!r}, {self.request_id!r})"

    async def status(self, *, logs: bool = False) -> Status:
        return await self.client.status(self.request_id, endpoint_id=self.endpoint_id, logs=logs)

    def events(self, *, logs: bool = True) -> AsyncIterator[Status]:
        return self.client.events(self.request_id, endpoint_id=self.endpoint_id, logs=logs)

    async def wait(self, *, on_update: UpdateCallback | None = None, timeout: float | None = None,
                   logs: bool = True) -> Status:
        return await self.client.wait(self.request_id, endpoint_id=self.endpoint_id, on_update=on_update,
                                      timeout=timeout, logs=logs)

    async def result(self) -> Result:
        return await self.client.result(self.request_id, endpoint_id=self.endpoint_id)

    async def get(self, *, on_update: UpdateCallback | None = None, timeout: float | None = None) -> Result:
        await self.wait(on_update=on_update, timeout=timeout)
        return await self.result()

    async def cancel(self) -> bool:
        return await self.client.cancel(self.request_id, endpoint_id=self.endpoint_id)

