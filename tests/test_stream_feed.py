"""Status streams (SSE) share one change feed per process, and each key has a stream limit.

The app runs in this process under a real uvicorn on loopback (SQLite and PostgreSQL), so the
test can count the SQL statements it sends: 200 open streams must not mean 200 pollers. Also here:
the byte-bounded caches, and X-Forwarded-* honoured only from ``forwarded_allow_ips``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
import uvicorn
from apihelp import APP, IMAGE, V2
from live_server import free_port
from sqlalchemy import event

from stillreel.api.app import create_app
from stillreel.api.serving import uvicorn_options
from stillreel.config import Limits, Settings
from stillreel.jobs.bytecache import ByteBoundedCache
from stillreel.jobs.store import FINAL_CACHE_BYTES, JobStore


class InProcessServer:
    def __init__(self, settings: Settings):
        self.app = create_app(settings, run_services=False)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = uvicorn_options(settings, 30.0)  # as ``stillreel serve`` runs it
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    **options))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.statements = 0
        event.listen(self.app.state.services.store.db, "before_cursor_execute", self._count)

    def _count(self, *args):
        self.statements += 1

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(15)


def _settings(tmp_path, database_url, **extra) -> Settings:
    url = None if database_url.startswith("sqlite") else database_url
    limits = extra.pop("limits", Limits())
    return Settings(data_dir=tmp_path, database_url=url, auth=False, workers=0, limits=limits, **extra)


async def _open_streams(url: str, n: int, stop: asyncio.Event, events: list):
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n + 10)) as client:

        async def one():
            async with client.stream("GET", url) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                        if events[-1]["status"] == "COMPLETED":
                            return

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_two_hundred_streams_share_one_poller(tmp_path, database_url):
    settings = _settings(tmp_path, database_url, limits=Limits(max_streams_per_key=500))
    with InProcessServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        sub = client.post(f"/queue/{V2}", json={"prompt": "p", "image_url": IMAGE}).json()  # no workers: stays queued
        other = client.post(f"/queue/{V2}", json={"prompt": "q", "image_url": IMAGE}).json()
        stream_url = sub["status_url"] + "/stream"
        loop = asyncio.new_event_loop()
        stop, events = asyncio.Event(), []
        runner = threading.Thread(target=loop.run_until_complete,
                                  args=(_open_streams(stream_url, 200, stop, events),))
        runner.start()
        try:
            deadline = time.monotonic() + 60
            while len([e for e in events if e["request_id"] == sub["request_id"]]) < 200:
                assert time.monotonic() < deadline, len(events)
                time.sleep(0.1)
            time.sleep(1.0)  # the streams' first reads are done
            before, t0 = srv.statements, time.monotonic()
            latencies = []
            while time.monotonic() - t0 < 3:
                t = time.monotonic()
                assert client.get(other["status_url"]).status_code == 202
                latencies.append(time.monotonic() - t)
                time.sleep(0.05)
            per_second = (srv.statements - before) / (time.monotonic() - t0)
            # All statements, the other key's polls included (≤ 2 each). Each stream polling on its
            # own was 200 × 4 polls × 2 statements: ~1000-1600/s measured here.
            assert per_second < 100, per_second
            latencies.sort()
            assert latencies[len(latencies) // 2] < 0.25, latencies
            # A change made elsewhere (another process's worker or API: nothing notifies this one)
            # still reaches every stream, through the feed's poll.
            other_store = JobStore(srv.app.state.services.store.url)
            try:
                assert other_store.cancel(sub["request_id"]) == "CANCELLATION_REQUESTED"
            finally:
                other_store.close()
            deadline = time.monotonic() + 10
            while len([e for e in events if e["status"] == "COMPLETED"]) < 200:
                assert time.monotonic() < deadline, len([e for e in events if e["status"] == "COMPLETED"])
                time.sleep(0.05)
        finally:
            loop.call_soon_threadsafe(stop.set)
            runner.join(30)
            loop.close()


def test_streams_per_key_are_limited(tmp_path, database_url):
    settings = _settings(tmp_path, database_url, limits=Limits(max_streams_per_key=3))
    with InProcessServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        sub = client.post(f"/queue/{V2}", json={"prompt": "p", "image_url": IMAGE}).json()
        url = sub["status_url"] + "/stream"
        streams = [client.stream("GET", url) for _ in range(3)]
        opened = [s.__enter__() for s in streams]
        try:
            assert all(r.status_code == 200 for r in opened)
            refused = client.get(url)
            assert refused.status_code == 429 and refused.headers["retry-after"]
            assert isinstance(refused.json()["detail"], str)
            assert client.get(sub["status_url"]).status_code == 202  # plain status polls are not limited
        finally:
            streams[0].__exit__(None, None, None)
        deadline = time.monotonic() + 10
        while True:  # the closed stream's slot comes back once the server sees the disconnect
            with client.stream("GET", url) as r:
                if r.status_code == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for s in streams[1:]:
            s.__exit__(None, None, None)


def test_forwarded_headers_only_from_allowed_proxies(tmp_path, database_url):
    headers = {"X-Forwarded-Host": "api.example", "X-Forwarded-Proto": "https"}
    for allow, expected in (((), None), (("10.0.0.0/8",), None), (("127.0.0.1",), "https://api.example"),
                            (("*",), "https://api.example")):
        settings = _settings(tmp_path / str(len(allow)) / (allow[0].replace("/", "_") if allow else "none"),
                             database_url, forwarded_allow_ips=allow)
        with InProcessServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
            base = expected or srv.url
            sub = client.post(f"/queue/{V2}", json={"prompt": "p", "image_url": IMAGE}, headers=headers).json()
            assert sub["status_url"].startswith(f"{base}/queue/{APP}/requests/"), (allow, sub["status_url"])
            for extra in ({}, {}, {"Origin": "http://x.example"}):  # fast path (computed, cached), full stack
                body = client.get(f"/queue/{APP}/requests/{sub['request_id']}/status", headers={**headers, **extra})
                assert body.json()["status_url"].startswith(base), (allow, body.json())


def test_byte_bounded_cache():
    cache = ByteBoundedCache(1000)
    assert not cache.put("huge", "x", 200)  # over max_bytes / 8: not kept at all
    for i in range(100):
        assert cache.put(i, i, 100)
    assert cache.bytes <= 1000 and len(cache) == 10 and 99 in cache and 0 not in cache
    cache.put(99, "again", 50)
    assert cache.get(99) == "again" and cache.bytes == 950
    assert cache.pop(99) == "again" and cache.bytes == 900


def test_finished_rows_cache_is_bounded_by_bytes(tmp_path, database_url):
    store = JobStore(database_url)
    try:
        ids = []
        for i in range(40):  # 40 finished rows of ~1 MB (inputs stored whole by older versions)
            job = store.enqueue(endpoint_id=V2, input={"prompt": "x" * 1_000_000, "i": i}, plan={}, engine={},
                                base_url="http://x")
            store.cancel(job.id)
            ids.append(job.id)
        for job_id in ids:
            assert store.get(job_id).status == "CANCELED"
        cached = [job_id for job_id in ids if job_id in store._final]
        assert 0 < len(cached) < 40 and ids[-1] in cached
        assert store._final.bytes <= FINAL_CACHE_BYTES
        assert store.get(ids[0]).input["i"] == 0  # evicted rows are read again
    finally:
        store.close()


def test_rendered_answers_cache_is_bounded_by_bytes(tmp_path, database_url):
    """The fast path keeps finished answers per (request, route, logs, base URL): 120 Hosts asking
    for a status with 400 kB of logs were 48 MB kept (the bound was 20,000 entries)."""
    settings = _settings(tmp_path, database_url)
    with InProcessServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        store = srv.app.state.services.store
        sub = client.post(f"/queue/{V2}", json={"prompt": "p", "image_url": IMAGE}).json()
        job = store.claim("test-worker", 30)
        assert job.id == sub["request_id"]
        store.heartbeat(job, 30, logs=[(time.time(), "INFO", "l" * 1000) for _ in range(400)])
        assert store.finish(job, result={"video": {"url": "http://x/v.mp4"}})
        for i in range(120):
            r = client.get(f"/queue/{APP}/requests/{job.id}/status", params={"logs": "1"},
                           headers={"Host": f"h{i}.example"})
            assert r.status_code == 200 and len(r.content) > 400_000
        final = srv.app._fast.final
        held = sum(len(entry[0]) for entry in (final.values()))
        assert held <= 32 * 1024 * 1024, held  # fastpath.FINAL_BYTES


@pytest.mark.parametrize("allow", [(), ("127.0.0.1",), ("*",)])
@pytest.mark.parametrize("headers", [
    [(b"host", b"h.example:8000")],
    [(b"host", b"h.example"), (b"x-forwarded-proto", b"https, http"), (b"x-forwarded-host", b"api.example, p")],
    [(b"host", b"a.example"), (b"host", b"b.example")],  # the first one counts, as Headers.get
    [(b"x-forwarded-host", b"api.example")],
    [],  # HTTP/1.0 without Host: the server's address
])
def test_base_url_of_the_fast_paths_is_the_stacks(tmp_path, allow, headers):
    """The fast paths build the base URL from the raw scope (``scope_base_url``); the routes behind
    the stack from the ``Request`` (``base_url``). Both must give the same URL for every header set."""
    from starlette.requests import Request

    from stillreel.api import deps
    from stillreel.config import Settings

    settings = Settings(data_dir=tmp_path, forwarded_allow_ips=allow)
    scope = {"type": "http", "scheme": "http", "headers": headers, "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000), "path": "/", "query_string": b"",
             "app": type("App", (), {"state": type("State", (), {"services": type("S", (), {"settings": settings})})})}
    fast = deps.scope_base_url(settings, scope)
    full = deps.base_url(Request(scope))
    assert fast in (None, full), (fast, full)
    if any(name == b"host" for name, _ in headers) or (allow and headers):
        assert fast == full
    if not headers:
        assert fast is None and full == "http://127.0.0.1:8000"
    public = Settings(data_dir=tmp_path, public_url="https://pub.example/")
    assert deps.scope_base_url(public, scope) == "https://pub.example"
