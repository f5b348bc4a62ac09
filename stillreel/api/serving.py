"""uvicorn as ``stillreel serve`` runs it: bounded headers, and deadlines for slow clients.

uvicorn's default HTTP parser (httptools) has no header size limit and uvicorn has no timeout for
a request's headers, so one client could send headers without end, or trickle them to hold a
connection open for ever. Here: h11, whose ``h11_max_incomplete_event_size`` bounds the request
line and headers (431/400 past it), plus ``GuardedH11``, which closes a connection whose next
request's headers are not complete ``header_timeout_s`` after it opened or after its last
response. (A slow *body* is bounded where it is read: ``inputs.read_body``, 408.)
X-Forwarded-* are the app's to judge (``deps.base_url``, ``--forwarded-allow-ips``), so uvicorn's
own proxy-header handling, which believes 127.0.0.1 by default, is off.
"""

from __future__ import annotations

from uvicorn.protocols.http.h11_impl import H11Protocol

from stillreel.config import Settings


class GuardedH11(H11Protocol):
    header_timeout_s = 30.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def _arm(self) -> None:
        # A new request (complete headers) replaces ``self.cycle``; if it is still the one seen
        # here when the timer fires, no request arrived in time.
        self.loop.call_later(self.header_timeout_s, self._expire, self.cycle)

    def _expire(self, armed) -> None:
        if self.cycle is armed and self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(settings: Settings, header_timeout_s: float) -> dict:
    limits = settings.limits
    protocol = type("StillreelH11", (GuardedH11,), {"header_timeout_s": header_timeout_s})
    return {
        "http": protocol,
        "h11_max_incomplete_event_size": limits.max_header_bytes,
        "timeout_keep_alive": limits.keep_alive_s,
        "proxy_headers": False,
    }
