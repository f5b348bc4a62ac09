"""fal's wire protocol on a live server (real HTTP on loopback), on SQLite and on PostgreSQL.

The queue paths run through ``tests/engines.py:StepEngine`` (tiny real MP4s, steerable from the
prompt); the motion engine's own end-to-end checks live with its tests.
"""

from __future__ import annotations

import json
import time

import av
import httpx
import pytest
from apihelp import APP, IMAGE, O3, V1, V2, data_uri, submit, wait
from conftest import server_env
from live_server import LiveServer



@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    args = ["--engine", "engines:StepEngine", "--cancel-grace", "1.5"]
    env = server_env(request.param)  # PostgreSQL: the key is created in the same database
    with LiveServer.start(tmp_path_factory.mktemp(f"api-{request.param}"), engine=None, args=args, env=env) as srv:
        yield srv


@pytest.fixture
def client(server):
    with server.http() as c:
        yield c


def test_submit_status_result(client, server):
    sub = submit(client, prompt="frames=10 delay=0.05")
    assert sub["status"] == "IN_QUEUE" and isinstance(sub["queue_position"], int)
    assert sub["status_url"] == f"{server.url}/queue/{APP}/requests/{sub['request_id']}/status"
    assert sub["cancel_url"].endswith("/cancel") and sub["response_url"].endswith(sub["request_id"])
    seen, progress = set(), []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = client.get(sub["status_url"], params={"logs": "1"})
        body = r.json()
        seen.add(body["status"])
        if body["status"] == "IN_PROGRESS":
            assert r.status_code == 202 and "logs" in body and 0 <= body["progress"] <= 100
            progress.append(body["progress"])
        if body["status"] == "COMPLETED":
            assert r.status_code == 200
            break
        time.sleep(0.03)
    assert "IN_PROGRESS" in seen and body["status"] == "COMPLETED"
    assert body["error"] is None and body["metrics"]["inference_time"] > 0
    assert any("test frame" in entry["message"] for entry in body["logs"])
    assert {"message", "level", "source", "timestamp"} <= set(body["logs"][0])
    assert progress == sorted(progress)
    result = client.get(sub["response_url"])
    assert result.status_code == 200 and result.headers["x-fal-request-id"] == sub["request_id"]
    video = result.json()["video"]
    assert video["content_type"] == "video/mp4" and video["file_size"] > 0
    data = httpx.get(video["url"]).content
    assert len(data) == video["file_size"]
    with av.open(__import__("io").BytesIO(data)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10


def test_every_route_form(client, server):
    sub = submit(client)
    wait(client, sub)
    rid = sub["request_id"]
    for prefix in ("/queue/" + APP, "/" + APP, "/queue/" + V2, "/" + V2):
        assert client.get(f"{prefix}/requests/{rid}/status").json()["status"] == "COMPLETED"
        assert client.get(f"{prefix}/requests/{rid}").status_code == 200
    assert client.get(f"/fal-ai/other-app/requests/{rid}/status").status_code == 404
    assert client.get(f"/queue/{APP}/requests/not-a-request/status").status_code == 404
    for value, has_logs in (("0", False), ("false", False), ("1", True), ("true", True)):
        logs = client.get(sub["status_url"], params={"logs": value}).json()["logs"]
        assert (logs is not None) == has_logs


def test_status_stream(client, server):
    sub = submit(client, prompt="frames=12 delay=0.05")
    events = []
    with client.stream("GET", sub["status_url"] + "/stream", params={"logs": "1"},
                       headers={"Accept": "text/event-stream"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():  # ends when the server closes the stream
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    statuses = [e["status"] for e in events]
    assert statuses[-1] == "COMPLETED" and "IN_PROGRESS" in statuses
    assert statuses.index("IN_PROGRESS") < statuses.index("COMPLETED")
    messages = [m["message"] for e in events for m in (e.get("logs") or [])]
    assert len(messages) == len(set(messages))  # each event carries only new log lines
    assert any("test frame" in m for m in messages)


def test_sync_run(client):
    r = client.post(f"/{V2}", json={"prompt": "frames=4", "image_url": IMAGE})
    assert r.status_code == 200, r.text
    assert r.json()["video"]["url"].startswith("http") and r.headers["x-fal-request-id"]


@pytest.mark.parametrize("endpoint,body,field,type_", [
    (V2, {"image_url": IMAGE}, "prompt", "missing"),
    (V2, {"prompt": "x"}, "image_url", "missing"),
    (V2, {"prompt": "x", "image_url": IMAGE, "duration": "7"}, "duration", "literal_error"),
    (V2, {"prompt": "x", "image_url": IMAGE, "cfg_scale": 1.5}, "cfg_scale", "less_than_equal"),
    (V1, {"prompt": "x", "image_url": IMAGE, "camera_control": "spin"}, "camera_control", "literal_error"),
    (V1, {"prompt": "x", "image_url": IMAGE, "dynamic_masks": [{"mask_url": IMAGE, "trajectories": [{"x": 1, "y": 1}]}]},
     "dynamic_masks", "trajectory_length"),
    (O3, {"image_url": IMAGE}, "prompt", "one_of"),
    (O3, {"image_url": IMAGE, "prompt": "a", "multi_prompt": [{"prompt": "b"}]}, "prompt", "one_of"),
    (O3, {"image_url": IMAGE, "duration": "6", "multi_prompt": [{"prompt": "a", "duration": "2"}, {"prompt": "b", "duration": "3"}]},
     "multi_prompt", "shot_durations"),
    (V2, {"prompt": "x", "image_url": "data:image/png;base64"}, "image_url", "file_download_error"),
])
def test_invalid_input_is_422_with_fal_detail(client, endpoint, body, field, type_):
    for path in (f"/queue/{endpoint}", f"/{endpoint}"):
        r = client.post(path, json=body)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert any(d["loc"][:2] == ["body", field] and d["type"] == type_ and d["msg"] for d in detail), detail


def test_no_input_produces_a_5xx(client):
    bodies = [b"", b"not json", b"[]", b'"text"', b"null", b"1e999", b'{"prompt": null}', b'{"prompt": ["x"]}',
              json.dumps({"prompt": "x", "image_url": 5}).encode(), b"\xff\xfe", json.dumps({"prompt": "x" * 100000}).encode()]
    for endpoint in (V1, V2, O3):
        for body in bodies:
            r = client.post(f"/queue/{endpoint}", content=body, headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (endpoint, body[:30], r.status_code, r.text)


def test_unknown_endpoint_and_request(client):
    assert client.post("/queue/fal-ai/kling-video/v9/image-to-video", json={}).status_code == 404
    assert client.post("/fal-ai/nope/run", json={}).status_code == 404
    assert client.get(f"/queue/{APP}/requests/00000000-0000-0000-0000-000000000000").status_code == 404


def test_auth(server):
    for headers in ({}, {"Authorization": "Key nope:nope"}, {"Authorization": f"Key {server.key}x"}):
        r = httpx.post(f"{server.url}/queue/{V2}", json={"prompt": "x", "image_url": IMAGE}, headers=headers)
        assert r.status_code == 401 and r.json()["detail"]
    with server.http() as c:
        sub = submit(c)
    from live_server import create_key

    other = create_key(server.data_dir, env=server.env)
    r = httpx.get(sub["status_url"], headers={"Authorization": f"Key {other}"})
    assert r.status_code == 404  # another key's request is not visible


def test_failed_generation_is_completed_with_error(client):
    sub = submit(client, prompt="fail")
    status = wait(client, sub)
    assert status["error"] and status["error_type"] == "value_error"
    r = client.get(sub["response_url"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "prompt"]


def test_bad_image_is_an_input_error_after_claim(client):
    sub = submit(client, image_url=data_uri(b"definitely not an image"))
    status = wait(client, sub)
    assert status["error_type"] == "image_load_error"
    r = client.get(sub["response_url"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "image_url"]


def test_unreachable_input_url(client):
    sub = submit(client, image_url="http://127.0.0.1:9/nothing.png")
    assert wait(client, sub)["error_type"] == "file_download_error"


def test_cancel_queued_running_finished_unknown(client):
    running = submit(client, prompt="frames=400 delay=0.05")
    wait(client, running, until=("IN_PROGRESS",))
    queued = submit(client)
    assert client.get(queued["status_url"]).json()["status"] == "IN_QUEUE"
    r = client.put(queued["cancel_url"])
    assert r.status_code == 202 and r.json()["status"] == "CANCELLATION_REQUESTED"
    assert client.get(queued["status_url"]).json()["error_type"] == "request_cancelled"
    r = client.put(running["cancel_url"])
    assert r.status_code == 202
    status = wait(client, running, timeout=10, logs=True)
    assert status["error_type"] == "request_cancelled"
    assert client.get(running["response_url"]).status_code == 400
    assert client.put(running["cancel_url"]).json()["status"] == "ALREADY_COMPLETED"
    assert client.put(running["cancel_url"]).status_code == 400
    r = client.put(f"/queue/{APP}/requests/00000000-0000-0000-0000-000000000000/cancel")
    assert r.status_code == 404 and r.json()["status"] == "NOT_FOUND"


def test_cancel_kills_an_engine_that_ignores_it_and_the_worker_survives(client):
    stubborn = submit(client, prompt="ignore-cancel frames=2000 delay=0.05")
    wait(client, stubborn, until=("IN_PROGRESS",))
    time.sleep(0.3)
    client.put(stubborn["cancel_url"])
    status = wait(client, stubborn, timeout=20, logs=True)
    assert status["error_type"] == "request_cancelled"
    assert any("killed" in entry["message"] for entry in status["logs"])
    after = submit(client, prompt="frames=3")
    assert wait(client, after)["error"] is None


def test_engine_crash_fails_the_request_not_the_worker(client):
    crashed = submit(client, prompt="crash frames=10")
    status = wait(client, crashed, timeout=30)
    assert status["error_type"] == "runner_disconnected"
    assert client.get(crashed["response_url"]).status_code == 500
    after = submit(client, prompt="frames=3")
    assert wait(client, after, timeout=60)["error"] is None


def test_priorities_and_queue_positions(client, server):
    blocker = submit(client, prompt="frames=60 delay=0.05")
    wait(client, blocker, until=("IN_PROGRESS",))
    low = submit(client, headers={"X-Fal-Queue-Priority": "low"})
    normal = submit(client)
    high = submit(client, headers={"X-Fal-Queue-Priority": "high"})
    positions = {name: client.get(s["status_url"]).json()["queue_position"]
                 for name, s in (("low", low), ("normal", normal), ("high", high))}
    assert positions == {"high": 0, "normal": 1, "low": 2}
    for s in (low, normal, high):
        wait(client, s)
    history = {item["request_id"]: item for item in client.get("/api/requests", params={"limit": 50}).json()}
    assert all(history[s["request_id"]]["status"] == "COMPLETED" for s in (low, normal, high))


def test_start_timeout_and_queue_length(client):
    blocker = submit(client, prompt="frames=60 delay=0.05")
    wait(client, blocker, until=("IN_PROGRESS",))
    late = submit(client, headers={"X-Fal-Request-Timeout": "1"})
    status = wait(client, late, timeout=15)
    assert status["error_type"] == "request_timeout"
    timed_out = client.get(late["response_url"])
    assert timed_out.status_code == 504 and timed_out.headers["X-Fal-Request-Timeout-Type"] == "user"
    full = client.post(f"/queue/{V2}", json={"prompt": "x", "image_url": IMAGE}, params={"fal_max_queue_length": 0})
    assert full.status_code == 503 and full.headers["Retry-After"]
    wait(client, blocker)


def test_cors_preflight_and_exposed_headers(server):
    r = httpx.options(f"{server.url}/queue/{V2}", headers={
        "Origin": "http://example.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-fal-queue-priority"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] in ("*", "http://example.test")
    with server.http() as c:
        sub = submit(c, headers={"Origin": "http://example.test"})
        wait(c, sub)
        r = c.get(sub["response_url"], headers={"Origin": "http://example.test"})
    assert "x-fal-request-id" in r.headers["access-control-expose-headers"].lower()


def test_proxy_mode_routes_on_target_url(client):
    r = client.post("/api/fal/proxy", json={"prompt": "frames=3", "image_url": IMAGE},
                    headers={"x-fal-target-url": f"https://queue.fal.run/{V2}"})
    assert r.status_code == 200 and r.json()["status"] == "IN_QUEUE"
    rid = r.json()["request_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        s = client.get("/api/fal/proxy", headers={
            "x-fal-target-url": f"https://queue.fal.run/{APP}/requests/{rid}/status?logs=1"}).json()
        if s["status"] == "COMPLETED":
            break
        time.sleep(0.05)
    assert s["logs"] is not None and s["error"] is None
    result = client.get("/api/fal/proxy", headers={"x-fal-target-url": f"https://queue.fal.run/{APP}/requests/{rid}"})
    assert result.json()["video"]["url"]
    bad = client.get("/api/fal/proxy", headers={"x-fal-target-url": "https://evil.example/x"})
    assert bad.status_code == 400


def test_openapi_documents(client):
    catalogue = client.get("/api/endpoints").json()
    from stillreel.endpoints.registry import ENDPOINTS

    assert {e["id"] for e in catalogue} == set(ENDPOINTS) and len(catalogue) == 45
    assert {V1, V2, O3, "fal-ai/kling-video/v1/pro/image-to-video",
            "fal-ai/kling-video/v2.5-turbo/standard/image-to-video"} <= set(ENDPOINTS)
    for endpoint_id in ENDPOINTS:  # every id has its own OpenAPI document
        assert client.get("/api/openapi/queue/openapi.json", params={"endpoint_id": endpoint_id}).status_code == 200
    doc = client.get("/api/openapi/queue/openapi.json", params={"endpoint_id": V1}).json()
    schema = doc["components"]["schemas"]["KlingVideoV1StandardImageToVideoInput"]
    assert schema["required"] == ["prompt", "image_url"]
    props = schema["properties"]
    assert props["duration"]["enum"] == ["5", "10"] and props["duration"]["default"] == "5"
    assert props["cfg_scale"]["minimum"] == 0 and props["cfg_scale"]["maximum"] == 1
    assert props["negative_prompt"]["default"] == "blur, distort, and low quality"
    assert schema["x-fal-order-properties"][:2] == ["prompt", "image_url"]
    assert f"/{V1}/requests/{{request_id}}/status" in doc["paths"]
    o3 = client.get("/api/openapi/queue/openapi.json", params={"endpoint_id": O3}).json()
    o3_props = o3["components"]["schemas"]["KlingVideoO3StandardImageToVideoInput"]["properties"]
    assert o3_props["generate_audio"]["default"] is False and o3_props["shot_type"]["default"] == "customize"
    assert client.get("/api/openapi/queue/openapi.json", params={"endpoint_id": "x/y"}).status_code == 404


def test_jwks_and_health(client):
    jwks = client.get("/.well-known/jwks.json").json()
    assert jwks["keys"][0]["kty"] == "OKP" and jwks["keys"][0]["crv"] == "Ed25519"
    assert client.get("/healthz").json()["ok"] is True


def test_engine_errors_name_the_endpoints_own_field():
    from stillreel.endpoints.registry import ENDPOINTS
    from stillreel.engines.base import EngineError
    from stillreel.jobs.child import failure_detail

    v1 = ENDPOINTS[V1].plan({"prompt": "p", "image_url": "u", "tail_image_url": "t"})
    o3 = ENDPOINTS[O3].plan({"prompt": "p", "image_url": "u", "end_image_url": "t"})
    err = EngineError("no", "image_load_error", ("end_image",))
    assert failure_detail(err, v1) == [{"loc": ["body", "tail_image_url"], "msg": "no", "type": "image_load_error"}]
    assert failure_detail(err, o3)[0]["loc"] == ["body", "end_image_url"]
    assert failure_detail(EngineError("no", loc=("start_image",)), v1)[0]["loc"] == ["body", "image_url"]
    assert failure_detail(EngineError("oom", "out_of_memory", status=503), v1) == "oom"
