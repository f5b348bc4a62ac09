"""Fault injection (``--faults``): fal's edge failing, runners failing, and a slow queue.

SPEC is a comma list of ``NAME=VALUE``:

* ``ROUTE=RATE`` (ROUTE: submit, status, result, cancel, upload, run) answers that share of the
  route's requests as fal's edge fails, before any handler runs (so nothing is half-applied). The
  kinds are the ones both fal clients retry (fal_client ``RETRY_CODES`` 429 and its "ingress error"
  rule: 502/503/504 whose body says nginx and that carry no ``x-fal-request-id``), so an app that
  survives them survives fal's real transient failures.
* ``generation=RATE``: that share of accepted submits (and sync runs) ends COMPLETED with one of
  fal's runner errors (flat ``{"detail", "error_type"}``, 500/502/503) instead of a video. Drawn
  here at submit and carried in the request's plan, so the worker only has to act on it.
* ``queue_delay=S``: every submitted request waits S seconds in the queue before a worker may take it.
* ``seed=N``: the same seed and request order give the same faults.
"""

from __future__ import annotations

import collections
import contextlib
import random
from dataclasses import dataclass, field

from stillreel.api.proxy import PROXY_PATH
from stillreel.api.proxy import route as proxy_route

ROUTES = ("submit", "status", "result", "cancel", "upload", "run")
KINDS = (429, 502, 503, 504)
_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
# fal's infrastructure ("request") errors a runner produces (fal-protocol.md §7.1).
RUNNER_ERRORS = (
    (503, "runner_disconnected", "The runner disconnected while processing the request"),
    (502, "runner_incomplete_response", "The runner returned an incomplete response"),
    (500, "runner_server_error", "The runner failed with an internal server error"),
)
SCOPE_KEY = "stillreel.faults"  # the ASGI scope entry the submit route reads (never a header: unspoofable)
PLAN_KEY = "injected_failure"  # in a request's stored plan; only present when a fault was drawn


@dataclass
class FaultSpec:
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    generation: float = 0.0
    queue_delay: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        spec = cls()
        for item in filter(None, (part.strip() for part in (text or "").split(","))):
            name, sep, value = item.partition("=")
            name = name.strip()
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"--faults: {item!r} is not NAME=NUMBER") from None
            if not sep:
                raise ValueError(f"--faults: {item!r} is not NAME=NUMBER")
            if name == "seed":
                spec.seed = int(number)
            elif name == "queue_delay":
                if not 0 <= number <= 3600:
                    raise ValueError("--faults: queue_delay is seconds, between 0 and 3600")
                spec.queue_delay = number
            elif name in (*ROUTES, "generation"):
                if not 0 <= number <= 1:
                    raise ValueError(f"--faults: the rate for {name} must be between 0 and 1")
                if name == "generation":
                    spec.generation = number
                else:
                    spec.rates[name] = number
            else:
                raise ValueError(
                    f"--faults: unknown route {name!r} (one of {', '.join(ROUTES)}, generation, queue_delay, seed)"
                )
        return spec

    @property
    def active(self) -> bool:
        return bool(self.rates or self.generation or self.queue_delay)


@dataclass(frozen=True)
class SubmitFaults:
    """What the middleware drew for one submit: a runner failure to end with, a queue hold."""

    failure: tuple[int, str, str] | None
    hold_s: float


def _response(kind: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
    if kind == 429:
        body = b'{"detail": "Too many requests"}'
        return [(b"content-type", b"application/json"), (b"retry-after", b"1")], body
    reason = _REASONS[kind]
    body = (f"<html>\r\n<head><title>{kind} {reason}</title></head>\r\n<body>\r\n<center><h1>{kind} "
            f"{reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n").encode()
    return [(b"content-type", b"text/html"), (b"server", b"nginx")], body


class FaultMiddleware:
    """ASGI middleware; ``route_of(method, path)`` names the fal route of a request.

    ``injected`` counts every fault since start; ``use(spec)`` switches the spec (and its random
    sequence, seeded afresh) for a block and gives that block its own count.
    """

    def __init__(self, app, spec: FaultSpec, route_of):
        self.app = app
        self.route_of = route_of
        self.spec = spec
        self.random = random.Random(spec.seed)
        self.injected: collections.Counter[str] = collections.Counter()
        self._blocks: list[collections.Counter[str]] = []

    @contextlib.contextmanager
    def use(self, spec: FaultSpec):
        previous = self.spec, self.random
        self.spec, self.random = spec, random.Random(spec.seed)
        counted: collections.Counter[str] = collections.Counter()
        self._blocks.append(counted)
        try:
            yield counted
        finally:
            self._blocks.remove(counted)
            self.spec, self.random = previous

    def _route(self, scope) -> str:
        path = scope["path"]
        if path.rstrip("/") == PROXY_PATH:  # fal's proxy protocol: the route is the target URL's
            target = next((v for k, v in scope["headers"] if k == b"x-fal-target-url"), None)
            routed = proxy_route(target.decode("latin-1"), set()) if target else None
            path = routed[0] if routed else path
        return self.route_of(scope["method"], path)

    def _count(self, kind: str) -> None:
        self.injected[kind] += 1
        for block in self._blocks:
            block[kind] += 1

    async def __call__(self, scope, receive, send):
        spec = self.spec
        if scope["type"] != "http" or not spec.active or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        route = self._route(scope)
        rate = spec.rates.get(route, 0.0)
        if rate and self.random.random() < rate:
            kind = self.random.choice(KINDS)
            self._count(str(kind))
            headers, body = _response(kind)
            await send({"type": "http.response.start", "status": kind,
                        "headers": [*headers, (b"access-control-allow-origin", b"*")]})
            await send({"type": "http.response.body", "body": body})
            return
        if route not in ("submit", "run") or not (spec.generation or spec.queue_delay):
            return await self.app(scope, receive, send)
        failure = None
        if spec.generation and self.random.random() < spec.generation:
            failure = self.random.choice(RUNNER_ERRORS)
        drawn = SubmitFaults(failure, spec.queue_delay)
        scope[SCOPE_KEY] = drawn

        async def counting_send(message):
            # Counted once the submit is accepted: a rejected one (422, 401) injected nothing.
            if message["type"] == "http.response.start" and message["status"] < 300:
                if drawn.failure:
                    self._count(drawn.failure[1])
                if drawn.hold_s:
                    self._count("queue_delay")
            await send(message)

        return await self.app(scope, receive, counting_send)

    def __getattr__(self, name):
        return getattr(self.app, name)


# -- the two ends of a submit-time fault ----------------------------------------------------------


def at_submit(scope: dict, plan: dict) -> float | None:
    """Called by the submit route: marks ``plan`` with the drawn runner failure (if any) and
    returns how long the request is held in the queue (None: not held)."""
    drawn: SubmitFaults | None = scope.get(SCOPE_KEY)
    if drawn is None:
        return None
    if drawn.failure:
        status, error_type, detail = drawn.failure
        plan[PLAN_KEY] = {"status": status, "error_type": error_type, "detail": detail}
    return drawn.hold_s or None


def injected_failure(plan: dict):
    """The ``Failure`` a worker ends this request with instead of running it, or None."""
    marked = plan.get(PLAN_KEY)
    if not marked:
        return None
    from stillreel.errors import Failure

    return Failure(int(marked["status"]), str(marked["detail"]), str(marked["error_type"]))
