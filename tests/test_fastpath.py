"""The status/result fast path (stillreel/api/fastpath.py) on a live server: its cached answers
follow every change of the request, of the queue and of the caller's key, and they are the same
answers the full FastAPI stack gives."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from apihelp import APP, IMAGE, V2, submit, wait
from live_server import LiveServer, cli, create_key


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    args = ["--engine", "engines:StepEngine", "--cancel-grace", "1.5"]
    with LiveServer.start(tmp_path_factory.mktemp("fastpath"), engine=None, args=args) as srv:
        yield srv


@pytest.fixture
def client(server):
    with server.http() as c:
        yield c


def _status(client, sub, **params):
    return client.get(sub["status_url"], params=params).json()


def test_queued_answers_follow_the_queue_at_once(client):
    blocker = submit(client, prompt="frames=100000 delay=0.05")
    deadline = time.monotonic() + 30
    while _status(client, blocker)["status"] != "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    ahead = submit(client, prompt="frames=2")
    mine = submit(client, prompt="frames=2")
    for _ in range(3):  # the second and third answers come from the cache
        assert _status(client, mine) == {**_status(client, mine), "status": "IN_QUEUE", "queue_position": 1}
    # A cancel, a higher-priority submit and the worker's claims move the position: no stale answer.
    assert client.put(ahead["cancel_url"]).status_code == 202
    assert _status(client, mine)["queue_position"] == 0
    submit(client, prompt="frames=2", headers={"X-Fal-Queue-Priority": "high"})
    assert _status(client, mine)["queue_position"] == 1
    client.put(blocker["cancel_url"])
    seen = []
    deadline = time.monotonic() + 30
    while not seen or seen[-1] != "COMPLETED":
        assert time.monotonic() < deadline
        seen.append(_status(client, mine, logs="1")["status"])
    assert "IN_QUEUE" in seen and seen[-1] == "COMPLETED"
    final = _status(client, mine, logs="1")
    assert final["error"] is None and any("test frame" in entry["message"] for entry in final["logs"])
    assert client.get(mine["response_url"]).json()["video"]["file_size"] > 0


def test_fast_answers_equal_the_full_stack(client, server):
    sub = submit(client)
    wait(client, sub)
    for url, params in ((sub["status_url"], {}), (sub["status_url"], {"logs": "true"}), (sub["response_url"], {})):
        fast = [client.get(url, params=params) for _ in range(2)]  # computed, then cached
        full = client.get(url, params=params, headers={"Origin": "http://example.test"})  # CORS: full stack
        for r in fast:
            assert r.status_code == full.status_code
            assert r.content == full.content
            assert r.headers["content-type"] == full.headers["content-type"] == "application/json"
            assert r.headers["x-fal-request-id"] == sub["request_id"]
            assert r.headers["vary"] == full.headers["vary"] == "Origin"  # as the stack's CORS layer adds it
        assert full.headers["access-control-allow-origin"] == "*"
        assert "x-fal-request-id" in full.headers["access-control-expose-headers"]
    # The base URL of the handed-back URLs follows each caller's Host, cached or not.
    for host in ("a.example:1", "b.example:2", "a.example:1"):
        body = client.get(sub["status_url"], headers={"Host": host}).json()
        assert body["status_url"] == f"http://{host}/queue/{APP}/requests/{sub['request_id']}/status"
    # Every route form, and the proxy.
    rid = sub["request_id"]
    for prefix in ("/" + APP, "/queue/" + V2, "/" + V2):
        assert client.get(f"{prefix}/requests/{rid}/status").json()["status"] == "COMPLETED"
    proxied = client.get("/api/fal/proxy", headers={
        "x-fal-target-url": f"https://queue.fal.run/{APP}/requests/{rid}/status"})
    assert proxied.status_code == 200 and proxied.json()["request_id"] == rid


def test_cached_answers_still_check_the_key(server):
    with server.http() as c:
        sub = submit(c)
        wait(c, sub)
        assert c.get(sub["status_url"]).status_code == 200  # now cached
    other = create_key(server.data_dir)
    assert httpx.get(sub["status_url"], headers={"Authorization": f"Key {other}"}).status_code == 404
    assert httpx.get(sub["response_url"], headers={"Authorization": f"Key {other}"}).status_code == 404
    for headers in ({}, {"Authorization": "Key nope:nope"}, {"Authorization": f"Key {server.key}x"}):
        r = httpx.get(sub["status_url"], headers=headers)
        assert r.status_code == 401 and r.json()["detail"] and r.headers["www-authenticate"] == "Key"
    # A key revoked by another process stops working once the server's 5 s key cache expires.
    with httpx.Client(headers={"Authorization": f"Key {other}"}) as c:
        mine = c.post(f"{server.url}/queue/{V2}", json={"prompt": "frames=2", "image_url": IMAGE}).json()
        deadline = time.monotonic() + 30
        while c.get(mine["status_url"]).json()["status"] != "COMPLETED":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        cli("keys", "revoke", other.split(":")[0], "--data-dir", str(server.data_dir))
        deadline = time.monotonic() + 15
        while (r := c.get(mine["status_url"])).status_code == 200:
            assert time.monotonic() < deadline, "the revoked key still reads its request"
            time.sleep(0.2)
        assert r.status_code == 401 and r.json()["detail"] == "Invalid API key"
        assert c.get(mine["response_url"]).status_code == 401


# -- one read per stale answer (in process, no server) ----------------------------------------


class _Store:
    """``snapshot`` blocks until released, and counts its calls."""

    def __init__(self, job):
        self.job = job
        self.calls = 0
        self.release = threading.Event()

    def snapshot(self, job_id, logs_after=None):
        self.calls += 1
        assert self.release.wait(30)
        if isinstance(self.job, Exception):
            raise self.job
        return self.job, 3, None


def _fast_path(job):
    from stillreel.api.fastpath import StatusFastPath
    from stillreel.config import Settings
    from stillreel.jobs.changes import Changes

    services = SimpleNamespace(settings=Settings(auth=False), store=_Store(job), changes=Changes(),
                               lifecycle=SimpleNamespace(on_retire=[]))
    return StatusFastPath(services), services


def _scope(job_id):
    return {"type": "http", "method": "GET", "path": f"/{APP}/requests/{job_id}/status", "query_string": b"",
            "headers": [(b"host", b"h.test")], "scheme": "http", "client": ("127.0.0.1", 1)}


def _queued_job(job_id="r1"):
    from stillreel.jobs.schema import QUEUED, Job

    return Job(seq=1, id=job_id, endpoint_id=V2, status=QUEUED, priority=1, input={}, plan={}, engine={},
               base_url="http://h.test", key_id=None, webhook_url=None, start_deadline=None, attempts=0,
               worker_id=None, lease_until=None, progress=0.0, result=None, error=None, error_type=None,
               error_status=None, created_at=0.0, started_at=None, finished_at=None, inference_time=None)


def test_callers_of_a_stale_answer_share_one_read():
    async def main():
        fast, services = _fast_path(_queued_job())
        callers = [asyncio.ensure_future(fast.answer(_scope("r1"))) for _ in range(10)]
        await asyncio.sleep(0.05)
        callers[0].cancel()  # one caller going away does not cancel the read of the others
        services.store.release.set()
        answers = await asyncio.gather(*callers[1:])
        assert services.store.calls == 1
        assert {a[0] for a in answers} == {answers[0][0]} and b'"queue_position":3' in answers[0][0]
        # A change in this process: the next caller reads again, even while an older read runs.
        services.store.release.clear()
        services.changes.touch()
        before = asyncio.ensure_future(fast.answer(_scope("r1")))
        await asyncio.sleep(0.05)
        services.changes.touch()
        after = asyncio.ensure_future(fast.answer(_scope("r1")))
        await asyncio.sleep(0.05)
        services.store.release.set()
        await asyncio.gather(before, after)
        assert services.store.calls == 3

    asyncio.run(main())


def test_a_failed_shared_read_fails_each_caller_and_is_not_kept():
    async def main():
        fast, services = _fast_path(ConnectionError("database away"))
        callers = [asyncio.ensure_future(fast.answer(_scope("r1"))) for _ in range(3)]
        await asyncio.sleep(0.05)
        services.store.release.set()
        results = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results) and services.store.calls == 1
        services.store.job = _queued_job()
        assert (await fast.answer(_scope("r1")))[2] == 202 and services.store.calls == 2

    asyncio.run(main())


def test_fast_submits_equal_the_full_stack(client, server):
    def pair(headers=None, **kw):
        fast = client.post(f"/queue/{V2}", **kw, headers=headers or {})
        full = client.post(f"/queue/{V2}", **kw, headers={**(headers or {}), "Origin": "http://example.test"})
        return fast, full

    fast, full = pair(json={"prompt": "frames=2", "image_url": IMAGE})
    assert fast.status_code == full.status_code == 200
    a, b = fast.json(), full.json()
    assert a.keys() == b.keys() and a["status"] == "IN_QUEUE" and a["request_id"] != b["request_id"]
    assert a["status_url"].replace(a["request_id"], "") == b["status_url"].replace(b["request_id"], "")
    assert fast.headers["x-fal-request-id"] == a["request_id"] and fast.headers["vary"] == "Origin"
    assert full.headers["access-control-allow-origin"] == "*" and "access-control-allow-origin" not in fast.headers
    # Errors: the same status, body and headers as the stack's own handlers give.
    for kw in ({"json": {"prompt": "frames=2"}}, {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
               {"json": {"prompt": "frames=2", "image_url": IMAGE}, "params": {"fal_webhook": "http://127.0.0.1/x"}},
               {"json": {"prompt": "frames=2", "image_url": IMAGE}, "params": {"fal_max_queue_length": "0"}}):
        fast, full = pair(**kw)
        assert fast.status_code == full.status_code and fast.status_code in (422, 503), fast.text
        assert re.sub(rb"\d+", b"N", fast.content) == re.sub(rb"\d+", b"N", full.content)  # queue lengths move
        assert {k: v for k, v in fast.headers.items() if k not in ("date", "content-length")} == {
            k: v for k, v in full.headers.items() if not k.startswith("access-control") and k not in ("date", "content-length")}
    # Callers the fast path does not know go down the stack: 401 in fal's shape, unknown endpoints 404.
    r = httpx.post(f"{server.url}/queue/{V2}", json={"prompt": "frames=2", "image_url": IMAGE})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Key"
    assert client.post("/queue/fal-ai/nope/v1", json={}).status_code == 404
