"""fal's queue and sync-run routes: submit, status, status stream, result, cancel, run.

Status, result and cancel live under the app (``/fal-ai/kling-video/requests/{id}``) and, as some
fal documents show, under the full endpoint path too; both with and without the ``/queue`` prefix.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from stillreel.api import deps, faults
from stillreel.api.request_body import plan_request
from stillreel.endpoints.registry import find
from stillreel.errors import InputError
from stillreel.jobs.changes import StreamFeed, TooManyStreams
from stillreel.jobs.schema import CANCELED, PRIORITIES, QUEUED, SUCCEEDED, Failure, Job, QueueFull
from stillreel.jobs.webhook_url import WebhookURLError, check_webhook_url
from stillreel.storage.lifecycle import requested_lifetime

router = APIRouter()
KEEPALIVE_S = 15.0


def _urls(base: str, job: Job) -> dict:
    endpoint = find(job.endpoint_id)
    root = f"{base}/queue/{endpoint.app if endpoint else job.endpoint_id}/requests/{job.id}"
    return {"response_url": root, "status_url": f"{root}/status", "cancel_url": f"{root}/cancel"}


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _log_items(rows: list[dict]) -> list[dict]:
    return [{"message": r["message"], "level": r["level"], "source": "USER", "timestamp": _iso(r["timestamp"])} for r in rows]


def error_message(job: Job) -> str | None:
    failure = Failure.from_row(job)
    return failure.message if failure else None


def status_body(job: Job, base: str, position: int | None, logs: list[dict] | None) -> dict:
    """fal's status JSON. ``logs``: None to send ``"logs": null``, else the log rows to include."""
    body = {"request_id": job.id, **_urls(base, job)}
    if job.status == QUEUED:
        body.update(status="IN_QUEUE", queue_position=position or 0)
        return body
    items = _log_items(logs) if logs is not None else None
    if not job.terminal:
        body.update(status="IN_PROGRESS", logs=items, progress=round(job.progress * 100, 1))
        return body
    body.update(
        status="COMPLETED",
        logs=items,
        metrics={"inference_time": job.inference_time} if job.inference_time is not None else {},
        error=error_message(job),
        error_type=job.error_type,
        progress=100.0 if job.status == SUCCEEDED else round(job.progress * 100, 1),
    )
    return body


def _wants_logs(request: Request) -> bool:
    return request.query_params.get("logs", "0").lower() in ("1", "true", "yes")


def check_access(job: Job | None, prefix: str, who: deps.Caller) -> Job:
    """404 unless ``job`` exists under this app (or endpoint) path and belongs to the caller."""
    endpoint = find(job.endpoint_id) if job else None
    known = job is not None and prefix.strip("/") in (job.endpoint_id, endpoint.app if endpoint else "")
    if not known or (who.key_id is not None and job.key_id not in (None, who.key_id)):
        raise HTTPException(404, "Request not found")
    return job


# -- submit and run ----------------------------------------------------------------------------


async def _enqueue(request: Request, endpoint_id: str, who: deps.Caller, *, sync: bool) -> tuple[Job, int]:
    endpoint = find(endpoint_id)
    if endpoint is None:
        raise HTTPException(404, f"Unknown endpoint: {endpoint_id.strip('/')}")
    services = deps.services(request)
    webhook = None if sync else request.query_params.get("fal_webhook") or None
    if webhook is not None:  # before the body: a refused submit must not have stored its data URIs
        try:  # in a thread: it resolves the host
            await run_in_threadpool(check_webhook_url, webhook, services.settings.limits.allow_private_urls)
        except WebhookURLError as exc:
            raise InputError.at(["query", "fal_webhook"], exc.message, exc.error_type) from None
    base = deps.base_url(request)
    plan, payload = await plan_request(request, endpoint, base)
    headers = deps.fal_headers(request.scope)
    # fal's sync path skips the queue; here it is the same queue, at the front.
    wanted = "high" if sync else headers.get("x-fal-queue-priority", "normal").lower()
    priority = PRIORITIES.get(wanted, PRIORITIES["normal"])
    deadline = None
    try:
        timeout = float(headers.get("x-fal-request-timeout", "") or 0)
        if timeout > 0:
            deadline = time.time() + timeout
    except ValueError:
        pass
    plan_json = plan.to_json()
    hold_s = faults.at_submit(request.scope, plan_json)  # --faults generation / queue_delay drew these
    max_queue = request.query_params.get("fal_max_queue_length")
    max_queue = int(max_queue) if max_queue and max_queue.isdigit() else services.settings.default_max_queue
    try:
        job, position = await services.store.submit_async(
            endpoint_id=endpoint.id, input=payload, plan=plan_json,
            engine=services.settings.engine_for(endpoint.id).to_json(), base_url=base,
            priority=priority, key_id=who.key_id, webhook_url=webhook,
            start_deadline=deadline, max_queue=None if sync else max_queue,
            **({"hold_until": time.time() + hold_s} if hold_s else {}),
        )
    except QueueFull as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5", "X-Fal-Error-Type": "queue_full"}) from None
    if (lifetime := requested_lifetime(headers)) is not None:  # how long the outputs live
        await run_in_threadpool(services.lifecycle.outputs_expire_in, job.id, lifetime)
    services.changes.touch()
    services.wake.set()
    return job, position


@router.post("/queue/{endpoint_id:path}")
async def submit(endpoint_id: str, request: Request, who: deps.CallerDep):
    job, position = await _enqueue(request, endpoint_id, who, sync=False)
    body = {"status": "IN_QUEUE", "request_id": job.id, "gateway_request_id": job.id,
            **_urls(job.base_url, job), "queue_position": position}
    return JSONResponse(body, headers={"x-fal-request-id": job.id})


def result_response(job: Job) -> JSONResponse:
    headers = {"x-fal-request-id": job.id}
    if job.status == SUCCEEDED:
        return JSONResponse(job.result, headers=headers)
    if not job.terminal:
        return JSONResponse({"detail": "Request is still in progress"}, status_code=400, headers=headers)
    failure = Failure.from_row(job) or Failure(500, "failed", None)
    return JSONResponse(failure.body(), status_code=failure.status, headers={**headers, **failure.headers()})


async def run_sync(endpoint_id: str, request: Request, who: deps.Caller) -> JSONResponse:
    """fal.run: the same queue at high priority, answered when the request ends."""
    job, _ = await _enqueue(request, endpoint_id, who, sync=True)
    services = deps.services(request)
    store, changed = services.store, services.changes
    while not job.terminal:
        await changed.wait(job.id, 0.5)
        if await request.is_disconnected():
            await run_in_threadpool(store.cancel, job.id)
            return JSONResponse({"detail": "client disconnected"}, status_code=499)
        job = await run_in_threadpool(store.get, job.id)
    return result_response(job)


# -- status, stream, result, cancel ------------------------------------------------------------


def split_request_path(path: str) -> tuple[str, str, str] | None:
    """``{prefix}/requests/{id}[/{tail}]`` → (prefix, id, tail)."""
    parts = path.strip("/").split("/")
    if "requests" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("requests")
    if i == 0 or i + 1 >= len(parts):
        return None
    return "/".join(parts[:i]), parts[i + 1], "/".join(parts[i + 2 :])


async def request_get(path: str, request: Request, who: deps.Caller):
    split = split_request_path(path)
    if split is None:
        raise HTTPException(404, "Not Found")
    prefix, job_id, tail = split
    if tail not in ("", "status", "status/stream"):
        raise HTTPException(404, "Not Found")
    store = deps.services(request).store
    with_logs = tail == "status" and _wants_logs(request)
    job, position, logs = await run_in_threadpool(store.snapshot, job_id, 0 if with_logs else None)
    check_access(job, prefix, who)
    if tail == "":
        return result_response(job)
    if tail == "status":
        body = status_body(job, deps.base_url(request), position, logs)
        return JSONResponse(body, status_code=200 if job.terminal else 202, headers={"x-fal-request-id": job.id})
    feed = deps.services(request).stream_feed
    try:
        feed.open(who.key_id)
    except TooManyStreams as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": "5"}) from None
    return _StatusStream(
        _stream(request, job, _wants_logs(request), feed),
        release=lambda: feed.close(who.key_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "x-fal-request-id": job.id},
    )


class _StatusStream(StreamingResponse):
    """Gives the stream's slot back however the response ends (also when it never starts)."""

    def __init__(self, content, *, release, **kwargs):
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def _stream(request: Request, job: Job, with_logs: bool, feed: StreamFeed):
    """Status events: read when the request changes (the feed's poll, or this process's workers),
    not on a timer of its own."""
    store = deps.services(request).store
    base = deps.base_url(request)
    last_log = 0
    last_sent = None
    last_write = time.monotonic()
    with feed.watch(job.id) as changed:
        while True:
            changed.clear()  # before reading: a change made meanwhile sets it again
            job, position, rows = await run_in_threadpool(store.snapshot, job.id, last_log if with_logs else None)
            body = status_body(job, base, position, rows)
            if rows:
                last_log = rows[-1]["seq"]
            key = {k: v for k, v in body.items() if k != "logs"}
            if rows or key != last_sent:
                last_sent = key
                last_write = time.monotonic()
                yield f"data: {json.dumps(body)}\n\n"
            if job.terminal:
                return
            while not changed.is_set():
                quiet = KEEPALIVE_S - (time.monotonic() - last_write)
                if quiet <= 0:
                    last_write = time.monotonic()
                    yield ": keep-alive\n\n"
                    continue
                try:
                    await asyncio.wait_for(changed.wait(), quiet)
                except asyncio.TimeoutError:
                    pass
            if await request.is_disconnected():
                return


async def request_cancel(path: str, request: Request, who: deps.Caller):
    split = split_request_path(path)
    if split is None or split[2] != "cancel":
        raise HTTPException(404, "Not Found")
    prefix, job_id, _ = split
    services = deps.services(request)
    store = services.store
    try:
        check_access(await run_in_threadpool(store.get, job_id), prefix, who)
    except HTTPException:
        return JSONResponse({"status": "NOT_FOUND", "detail": "Request not found"}, status_code=404)
    outcome = await run_in_threadpool(store.cancel, job_id)
    services.changes.notify(job_id)
    code = {"CANCELLATION_REQUESTED": 202, "ALREADY_COMPLETED": 400, "NOT_FOUND": 404}[outcome]
    job = await run_in_threadpool(store.get, job_id)
    if job is not None and job.status == CANCELED:
        services.wake.set()
    return JSONResponse({"status": outcome}, status_code=code, headers={"x-fal-request-id": job_id})


@router.get("/queue/{path:path}")
async def queue_get(path: str, request: Request, who: deps.CallerDep):
    return await request_get(path, request, who)


@router.put("/queue/{path:path}")
async def queue_put(path: str, request: Request, who: deps.CallerDep):
    return await request_cancel(path, request, who)
