"""Fault injection (``--faults``): answer some requests as fal's edge fails, before any handler runs.

SPEC is a comma list of ``ROUTE=RATE`` (ROUTE: submit, status, result, cancel, upload, run) plus
``seed=N``. The kinds are the ones both fal clients retry (fal_client ``RETRY_CODES`` 429 and its
"ingress error" rule: 502/503/504 whose body says nginx and that carry no ``x-fal-request-id``), so an
app that survives them survives fal's real transient failures. A faulted request never reaches the
app, so nothing is half-applied. Deterministic for a given seed and request order.
"""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass, field

ROUTES = ("submit", "status", "result", "cancel", "upload", "run")
KINDS = (429, 502, 503, 504)
_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}


@dataclass
class FaultSpec:
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0

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
            elif name in ROUTES:
                if not 0 <= number <= 1:
                    raise ValueError(f"--faults: the rate for {name} must be between 0 and 1")
                spec.rates[name] = number
            else:
                raise ValueError(f"--faults: unknown route {name!r} (one of {', '.join(ROUTES)}, seed)")
        return spec


def _response(kind: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
    if kind == 429:
        body = b'{"detail": "Too many requests"}'
        return [(b"content-type", b"application/json"), (b"retry-after", b"1")], body
    reason = _REASONS[kind]
    body = (f"<html>\r\n<head><title>{kind} {reason}</title></head>\r\n<body>\r\n<center><h1>{kind} "
            f"{reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n").encode()
    return [(b"content-type", b"text/html"), (b"server", b"nginx")], body


class FaultMiddleware:
    """ASGI middleware; ``route_of(method, path)`` names the fal route of a request."""

    def __init__(self, app, spec: FaultSpec, route_of):
        self.app = app
        self.spec = spec
        self.route_of = route_of
        self.random = random.Random(spec.seed)
        self.injected: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.spec.rates and scope["method"] != "OPTIONS":
            rate = self.spec.rates.get(self.route_of(scope["method"], scope["path"]), 0.0)
            if rate and self.random.random() < rate:
                kind = self.random.choice(KINDS)
                self.injected[str(kind)] += 1
                headers, body = _response(kind)
                await send({"type": "http.response.start", "status": kind,
                            "headers": [*headers, (b"access-control-allow-origin", b"*")]})
                await send({"type": "http.response.body", "body": body})
                return
        return await self.app(scope, receive, send)

    def __getattr__(self, name):
        return getattr(self.app, name)
