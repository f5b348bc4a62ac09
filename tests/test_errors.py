"""The one error model (``stillreel.errors``) on fal's wire, and the one ``Services`` the app shares.

Each way a request can fail is pinned to its exact bytes where the client sees it: the submit's
answer, the result route (status, body, headers), the status route's ``error`` line and the
webhook body. The bodies are fal's, and they are not uniform (a 422 list has no ``error_type``;
every string detail has one), so they are written out here in full rather than derived.
"""

from __future__ import annotations

import json
import time

import pytest
from apihelp import APP, V1
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from stillreel.api import deps
from stillreel.api.app import create_app
from stillreel.api.services import Services
from stillreel.config import Settings
from stillreel.endpoints.registry import InputError as RegistryInputError
from stillreel.engines.base import EngineError as BaseEngineError
from stillreel.engines.diffusion.options import OptionsError as DiffusionOptionsError
from stillreel.errors import EngineError, Failure, InputError, OptionsError, StillreelError
from stillreel.jobs.outbox import webhook_body
from stillreel.jobs.schema import CANCELED, FAILED, TIMED_OUT

HOOK = "https://hooks.example.com/done"
ITEM = {"loc": ["body", "image_url"], "msg": "the image could not be decoded", "type": "image_load_error"}


@pytest.fixture
def services(tmp_path):
    built = Services(Settings(data_dir=tmp_path, auth=False, workers=0))
    yield built
    built.store.close()


@pytest.fixture
def client(services):
    app = create_app(services.settings, run_services=False, services=services)
    with TestClient(app) as c:
        yield c


def _queued(services, **fields):
    return services.store.enqueue(endpoint_id=V1, input={}, plan={}, engine={}, base_url="http://testserver",
                                  webhook_url=HOOK, **fields)


def _ended_by_worker(services, **finish):
    job = _queued(services)
    claimed = services.store.claim("w", 30)
    assert claimed.id == job.id and services.store.finish(claimed, **finish)
    return services.store.get(job.id)


def _result(client, job_id):
    return client.get(f"/queue/{APP}/requests/{job_id}")


def _status_error(client, job_id):
    body = client.get(f"/queue/{APP}/requests/{job_id}/status").json()
    assert body["status"] == "COMPLETED"
    return body["error"], body["error_type"]


def _webhook(services, job_id):
    (row,) = services.store.outbox(job_id)
    assert json.loads(row["body"]) == webhook_body(services.store.get(job_id))
    return json.loads(row["body"])


# -- the hierarchy -------------------------------------------------------------------------------


def test_the_error_types_are_one_hierarchy():
    assert BaseEngineError is EngineError and RegistryInputError is InputError
    assert DiffusionOptionsError is OptionsError
    assert issubclass(InputError, EngineError) and issubclass(EngineError, StillreelError)
    assert issubclass(OptionsError, StillreelError) and issubclass(OptionsError, ValueError)
    exc = InputError.one(("image_url",), "bad", "value_error", limit=3)
    assert exc.detail == [{"loc": ["body", "image_url"], "msg": "bad", "type": "value_error", "ctx": {"limit": 3}}]
    assert (exc.status, exc.error_type, exc.loc, exc.message) == (422, "value_error", ("body", "image_url"), "bad")
    assert OptionsError("option 'steps' is invalid").failure() == Failure(
        500, "option 'steps' is invalid", "engine_options_invalid")
    assert EngineError("no GPU", "out_of_memory", status=503).detail == "no GPU"
    assert EngineError("too short", "value_error", ("seconds",)).detail == [
        {"loc": ["seconds"], "msg": "too short", "type": "value_error"}]


@pytest.mark.parametrize("failure", [
    Failure(422, [ITEM], "image_load_error"), Failure.cancelled(), Failure.start_deadline_passed(),
    Failure.worker_lost(3), Failure(500, "the engine process died (exit code -9)", "runner_disconnected"),
])
def test_a_failure_is_stored_and_read_back_whole(failure):
    class Row:  # the columns a job row has
        error, error_type, error_status = failure.to_row().values()

    assert Failure.from_row(Row) == failure


# -- raised at submit: the app's one handler -----------------------------------------------------


def test_input_errors_at_submit_are_fal_422_lists(client):
    r = client.post("/tokens/", json=[])
    assert r.status_code == 422
    assert r.json() == {"detail": [{"loc": ["body", "allowed_apps"], "msg": "expected a JSON object", "type": "value_error"}]}

    r = client.post(f"/queue/{V1}", params={"fal_webhook": "ftp://example.com/x"}, json={"prompt": "x"})
    assert r.status_code == 422
    ((item,),) = [r.json()["detail"]]
    assert set(r.json()) == {"detail"} and item["loc"] == ["query", "fal_webhook"] and set(item) == {"loc", "msg", "type"}

    r = client.post(f"/queue/{V1}", json={"prompt": "x", "image_url": "data:image/png;base64"})
    assert r.status_code == 422
    assert r.json() == {"detail": [{"loc": ["body", "image_url"], "msg": "invalid data URI: a data URI needs a "
                                    "comma between its header and its data", "type": "file_download_error"}]}

    r = client.post(f"/queue/{V1}", content=b"{nope")
    assert r.status_code == 422 and set(r.json()) == {"detail"} and r.json()["detail"][0]["type"] == "json_invalid"


def test_other_raised_errors_are_a_string_detail_with_error_type(client):
    def unavailable():
        raise EngineError("the engine is loading", "engine_unavailable", status=503)

    def misconfigured():
        raise OptionsError("diffusion engine: option 'steps' = 0 is invalid")

    for path, endpoint in (("/boom/unavailable", unavailable), ("/boom/options", misconfigured)):
        client.app.router.routes.insert(0, APIRoute(path, endpoint))  # ahead of the catch-all routes
    r = client.get("/boom/unavailable")
    assert (r.status_code, r.json()) == (503, {"detail": "the engine is loading", "error_type": "engine_unavailable"})
    r = client.get("/boom/options")
    assert (r.status_code, r.json()) == (500, {"detail": "diffusion engine: option 'steps' = 0 is invalid",
                                               "error_type": "engine_options_invalid"})


# -- stored: result route, status line, webhook --------------------------------------------------


def test_an_input_error_found_after_the_claim(client, services):
    job = _ended_by_worker(services, failure=Failure(422, [ITEM], "image_load_error"))
    assert job.status == FAILED
    r = _result(client, job.id)
    assert (r.status_code, r.json()) == (422, {"detail": [ITEM]})
    assert r.headers["x-fal-error-type"] == "image_load_error" and "x-fal-request-timeout-type" not in r.headers
    assert _status_error(client, job.id) == ("the image could not be decoded", "image_load_error")
    assert _webhook(services, job.id) == {
        "request_id": job.id, "gateway_request_id": job.id, "status": "ERROR",
        "error": "Invalid status code: 422", "error_type": "image_load_error", "payload": {"detail": [ITEM]}}


def test_a_generation_fault(client, services):
    job = _ended_by_worker(services, failure=Failure(500, "the engine process died (exit code -9)",
                                                     "runner_disconnected"))
    r = _result(client, job.id)
    assert (r.status_code, r.json()) == (500, {"detail": "the engine process died (exit code -9)",
                                               "error_type": "runner_disconnected"})
    assert r.headers["x-fal-error-type"] == "runner_disconnected"
    assert _status_error(client, job.id) == ("the engine process died (exit code -9)", "runner_disconnected")
    assert _webhook(services, job.id)["payload"] == {"detail": "the engine process died (exit code -9)"}


@pytest.mark.parametrize("how", ["queued", "running", "lease_lost"])
def test_cancelled(client, services, how):
    if how == "queued":
        job = _queued(services)
        assert client.put(f"/queue/{APP}/requests/{job.id}/cancel").status_code == 202
    elif how == "running":
        job = _ended_by_worker(services, cancelled=True)
    else:  # cancel asked, then the worker vanished: maintenance ends it
        job = _queued(services)
        services.store.claim("w", -1)
        assert services.store.cancel(job.id) == "CANCELLATION_REQUESTED"
        assert services.store.maintain(max_attempts=3) == 1
    assert services.store.get(job.id).status == CANCELED
    r = _result(client, job.id)
    assert (r.status_code, r.json()) == (400, {"detail": "The request was cancelled", "error_type": "request_cancelled"})
    assert r.headers["x-fal-error-type"] == "request_cancelled"
    assert _status_error(client, job.id) == ("The request was cancelled", "request_cancelled")
    assert _webhook(services, job.id) == {
        "request_id": job.id, "gateway_request_id": job.id, "status": "ERROR",
        "error": "Invalid status code: 400", "error_type": "request_cancelled",
        "payload": {"detail": "The request was cancelled"}}


def test_request_timeout(client, services):
    job = _queued(services, start_deadline=time.time() - 1)
    assert services.store.maintain(max_attempts=3) == 1
    assert services.store.get(job.id).status == TIMED_OUT
    r = _result(client, job.id)
    detail = "The request did not start before its X-Fal-Request-Timeout deadline"
    assert (r.status_code, r.json()) == (504, {"detail": detail, "error_type": "request_timeout"})
    assert r.headers["x-fal-error-type"] == "request_timeout" and r.headers["x-fal-request-timeout-type"] == "user"
    assert _status_error(client, job.id) == (detail, "request_timeout")
    assert _webhook(services, job.id)["payload"] == {"detail": detail}


def test_runner_disconnected(client, services):
    job = _queued(services)
    services.store.claim("w", -1)  # its lease has run out: the worker is gone
    assert services.store.maintain(max_attempts=1) == 1
    assert services.store.get(job.id).status == FAILED
    r = _result(client, job.id)
    detail = "The worker running this request stopped 1 times"
    assert (r.status_code, r.json()) == (503, {"detail": detail, "error_type": "runner_disconnected"})
    assert _status_error(client, job.id) == (detail, "runner_disconnected")
    assert _webhook(services, job.id)["error"] == "Invalid status code: 503"


# -- Services: built once, shared by every route -------------------------------------------------


def test_the_app_keeps_one_services_and_its_routes_use_it(services, client):
    app = client.app
    assert app.state.services is services
    assert set(vars(app.state)["_state"]) == {"services"}  # nothing else is read from app.state by name
    r = client.post(f"/queue/{V1}", json={"prompt": "zoom in", "image_url": "https://example.com/a.png"})
    assert r.status_code == 200, r.text
    job = services.store.get(r.json()["request_id"])  # the route wrote through the injected store
    assert job is not None and job.endpoint_id == V1
    assert client.get(f"/queue/{APP}/requests/{job.id}/status").json()["status"] == "IN_QUEUE"
    assert client.get("/.well-known/jwks.json").json() == services.signer.jwks()
    token = client.post("/tokens/", json={"allowed_apps": ["kling-video"]}).json()
    assert token.count(".") == 2 and services.__dict__["jwt_secret"]  # made on first use, kept


def test_the_services_dependency(services):
    app = create_app(services.settings, run_services=False, services=services)
    seen = []

    def probe(svc: deps.ServicesDep):
        seen.append(svc)
        return {"auth": svc.settings.auth}

    app.router.routes.insert(0, APIRoute("/probe", probe))
    with TestClient(app) as c:
        assert c.get("/probe").json() == {"auth": False}
        c.get("/probe")
    assert seen == [services, services]


def test_a_row_without_error_type_answers_as_before():
    """Rows written without an error type (older versions) answer with no error_type at all."""
    class Row:
        error, error_type, error_status = {"detail": "failed"}, None, None

    failure = Failure.from_row(Row)
    assert (failure.status, failure.body(), failure.headers()) == (500, {"detail": "failed"}, {})
