"""A pure-ASGI fast path for the two routes clients poll: ``GET …/requests/{id}/status`` and
``GET …/requests/{id}`` (the result).

``StillreelAPI`` is the FastAPI app with this path in front of its whole middleware stack (the
profile in BENCHMARKS.md: FastAPI's telemetry, body-limit, exception and routing layers cost more
than the answer). It answers only what it can answer exactly as the FastAPI routes would (same
bytes, status and headers, because it renders them with the same ``queue.status_body`` /
``queue.result_response``); everything else goes down the full stack:

- no ``Origin`` header (browsers' CORS requests take the full stack, whose CORS middleware adds
  its headers), and a path that is not the fal proxy's (proxied calls are routed by the stack);

- the caller's ``Authorization: Key …`` is in the keys' short-lived cache as a valid key (or auth
  is off); a missing, unknown, revoked or Bearer credential goes to FastAPI, which answers it
  (401 in fal's shape, or verifies the key and fills the cache);
- the request exists under this app or endpoint path and belongs to the caller; anything else
  (404s, the SSE stream, other methods) goes to FastAPI.

Answers are kept as rendered bytes, per (request id, route, logs, base URL):

- terminal requests (final: their row and logs no longer change) in a bounded cache;
- queued and running requests while nothing changed since they were read: the process's change
  counter (``Changes.generation``: submits, cancels, every worker write in this process) is the
  same, and for at most ``LIVE_TTL_S`` (changes made by other processes, which this one does not
  hear of: scale-out workers, other API processes).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from stillreel.api import deps, queue
from stillreel.api.unavailable import outage_response
from stillreel.endpoints.registry import ENDPOINTS, find
from stillreel.jobs.bytecache import ByteBoundedCache

# Rendered answers for finished requests, bounded by bytes: an answer with logs, or a result with
# a large error detail, is not "well under 2 kB", and an entry bound let a few of them hold a lot.
FINAL_BYTES = 32 * 1024 * 1024
LIVE_BYTES = 16 * 1024 * 1024  # queued/running answers (short-lived, but logs make them large)
LIVE_TTL_S = 0.1  # longest a queued/running answer is reused when nothing local changed

_TAILS = {"": "result", "status": "status"}


def _known_prefixes() -> set[str]:
    prefixes = set()
    for eid, endpoint in ENDPOINTS.items():
        prefixes.add(eid)
        prefixes.add(endpoint.app)
    return prefixes


class StillreelAPI(FastAPI):
    """FastAPI, with the status fast path answering first (``app.state.services`` must be set)."""

    _fast: StatusFastPath | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and "/requests/" in scope["path"]:
            if self._fast is None:
                self._fast = StatusFastPath(self.state.services)
            try:
                answer = await self._fast.answer(scope)
            except Exception as exc:
                # The database is away: answer 503 + Retry-After here (fal's clients retry it)
                # rather than try again through the full stack. Anything else: the stack answers.
                outage = outage_response(exc)
                answer = (outage.body, [*outage.raw_headers, _VARY], outage.status_code) if outage is not None else None
            if answer is not None:
                await send({"type": "http.response.start", "status": answer[2], "headers": answer[1]})
                await send({"type": "http.response.body", "body": answer[0]})
                return
        elif scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/queue/"):
            if await self._submit(scope, receive, send):
                return
        await super().__call__(scope, receive, send)

    async def _submit(self, scope, receive, send) -> bool:
        """``POST /queue/{endpoint}`` by the route itself (``queue.submit``), without the middleware
        stack, router and dependency solver in front of it: 28 % of a submit's CPU time in the
        profile (BENCHMARKS.md). Only for a known endpoint, a caller whose key is in the keys'
        cache (or auth off) and no ``Origin`` (CORS); the rest, as before, goes down the stack.
        Errors are rendered by the app's own exception handlers, as the stack would."""
        endpoint_id = scope["path"][len("/queue/"):]
        if find(endpoint_id) is None:
            return False
        key_id = _cached_caller(self.state.services, scope["headers"])
        if key_id is _REFUSED:
            return False
        scope["app"] = self  # what Starlette sets: request.app for the route
        request = Request(scope, receive)
        try:
            response = await queue.submit(endpoint_id, request, deps.Caller(key_id))
        except Exception as exc:
            handler = next((self.exception_handlers[c] for c in type(exc).__mro__ if c in self.exception_handlers), None)
            if handler is None:
                raise
            response = await handler(request, exc)
        response.raw_headers.append(_VARY)
        await response(scope, receive, send)
        return True


_REFUSED = object()
_VARY = (b"vary", b"Origin")  # what the stack's CORS middleware adds to an answer without Origin


def _cached_caller(services, headers):
    """The caller's key id when its ``Authorization: Key`` is in the keys' cache as valid (None
    with auth off); ``_REFUSED`` for anything the full stack must answer (401s, Bearer tokens,
    keys not verified yet, CORS requests)."""
    auth = None
    for name, value in headers:
        if name == b"authorization":
            auth = value
        elif name == b"origin":
            return _REFUSED
    if not services.settings.auth:
        return None
    return _cached_key(services, auth)


def _cached_key(services, auth: bytes | None):
    """The key id of a ``Key`` credential the keys' cache already accepted, else ``_REFUSED``: the
    full stack answers (401, or a verification that fills the cache)."""
    if auth is None:
        return _REFUSED
    scheme, _, credentials = auth.decode("latin-1").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "key" or not credentials:
        return _REFUSED
    key_id = services.keys.cached(credentials)
    return _REFUSED if key_id is None or key_id is services.keys.MISSING else key_id


class StatusFastPath:
    def __init__(self, services):
        self.services = services
        self.settings = services.settings
        self.prefixes = _known_prefixes()
        self.final = ByteBoundedCache(FINAL_BYTES)  # cache key -> (body, headers, status, owner)
        self.live = ByteBoundedCache(LIVE_BYTES)  # cache key -> (generation, expiry, entry, owner)
        self._reads: dict[tuple, tuple[int, asyncio.Future]] = {}  # reads in flight (``_read``)
        services.lifecycle.on_retire.append(self.forget)  # --retention deletes finished requests

    def _read(self, job_id: str, with_logs: bool, generation: int):
        """The store's snapshot of a request, one read at a time per (request, logs) and change
        generation: when an answer goes stale, the callers polling it (16 connections in
        bench/api.py) share one read instead of each making its own, all through the thread pool
        at once (the queued status ran at 0.3-0.5x the raw ASGI app for that)."""
        key = (job_id, with_logs)
        pending = self._reads.get(key)
        if pending is None or pending[0] != generation:
            task = asyncio.ensure_future(
                run_in_threadpool(self.services.store.snapshot, job_id, 0 if with_logs else None)
            )
            pending = self._reads[key] = (generation, task)
            task.add_done_callback(lambda t: self._read_done(key, t))
        # Shielded: one caller going away (a closed connection) does not cancel the others' read.
        return asyncio.shield(pending[1])

    def _read_done(self, key, task) -> None:
        if self._reads.get(key, (None, None))[1] is task:
            del self._reads[key]  # a finished read is never reused: later callers read afresh
        if not task.cancelled():
            task.exception()  # seen here even when every caller went away

    def forget(self, job_ids) -> None:
        gone = set(job_ids)
        for key in [k for k in self.final.keys() if k[0] in gone]:
            self.final.pop(key, None)

    async def answer(self, scope) -> tuple[bytes, list, int, str | None] | None:
        """(body, raw headers, status, owner) for this GET, or None: the full stack answers."""
        path = scope["path"]
        if path.startswith("/queue/"):
            path = path[6:]
        split = queue.split_request_path(path)
        if split is None:
            return None
        prefix, job_id, tail = split
        kind = _TAILS.get(tail)
        if kind is None or prefix not in self.prefixes:
            return None
        auth = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"origin":
                return None
        key_id = None
        if self.settings.auth:
            key_id = _cached_key(self.services, auth)
            if key_id is _REFUSED:
                return None
        base = deps.scope_base_url(self.settings, scope)
        if base is None:
            return None
        with_logs = False
        if kind == "status" and scope["query_string"]:
            params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
            with_logs = params.get("logs", "0").lower() in ("1", "true", "yes")
        cache_key = (job_id, kind, with_logs, base, prefix)
        hit = self.final.get(cache_key)
        if hit is not None:
            return hit if hit[3] in (None, key_id) else None
        generation = self.services.changes.generation
        live = self.live.get(cache_key)
        if live is not None and live[0] == generation and live[1] > time.monotonic():
            return live[2] if live[3] in (None, key_id) else None
        job, position, logs = await self._read(job_id, with_logs, generation)
        if job is None:
            return None
        try:
            queue.check_access(job, prefix, deps.Caller(key_id))
        except HTTPException:  # 404: FastAPI renders it
            return None
        headers = {"x-fal-request-id": job.id}
        if kind == "result":
            response = queue.result_response(job)
        else:
            body = queue.status_body(job, base, position, logs)
            response = JSONResponse(body, status_code=200 if job.terminal else 202, headers=headers)
        answer = (response.body, [*response.raw_headers, _VARY], response.status_code)
        # The owner travels with the answer: another key reaching the same cached entry is
        # sent to FastAPI (404), as is everything else this path does not handle.
        entry = (*answer, job.key_id if self.settings.auth else None)
        size = len(response.body) + sum(len(k) + len(v) for k, v in response.raw_headers) + 256
        if job.terminal:
            self.final.put(cache_key, entry, size)
        else:
            self.live.put(cache_key, (generation, time.monotonic() + LIVE_TTL_S, entry, entry[3]), size)
        return entry
