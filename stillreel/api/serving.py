"""uvicorn as ``stillreel serve`` runs it: httptools, bounded headers, and deadlines for slow clients.

uvicorn's fast HTTP parser (httptools) has no header size limit, and uvicorn has no timeout for a
request's headers: one client could send headers without end (httptools buffers a header until
it ends: a 4 MB header was read whole), or trickle them to hold a connection open for ever. h11
has a size bound but parses in Python: status polls answered from memory ran at half the rate.
``GuardedHttpTools`` keeps httptools and adds both bounds:

- the request line and headers of one request may be ``max_header_bytes`` long: past that, 431
  and the connection is closed. Counted twice, because httptools reports a header only once it
  has ended: the complete parts (URL pieces, finished headers) exactly as they are reported, and
  the bytes that arrived while a request's head was still open, checked after each read, so an
  unfinished giant header is cut off after at most one read past the limit;
- a connection whose next request's headers are not complete ``header_timeout_s`` after it opened
  or after its last response is closed (one timer per connection, re-armed when it fires).

A slow *body* is bounded where it is read: ``inputs.read_body``, 408. X-Forwarded-* are the app's
to judge (``deps.base_url``, ``--forwarded-allow-ips``), so uvicorn's own proxy-header handling,
which believes 127.0.0.1 by default, is off.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from stillreel.config import Settings

_REFUSAL = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: 33\r\nconnection: close\r\n\r\nRequest header fields too large.\n")


class HeadersTooLarge(Exception):
    pass


class OneSendPerTurn:
    """A transport whose writes made in one turn of the event loop leave in one send.

    uvicorn writes a response's head and its body separately, and each write of uvloop's transport
    is a system call at once: two per answer, where a status poll answered from memory costs a few
    tens of microseconds in all. Here the writes are joined and sent at the end of the turn (a
    ``call_soon``), or at once past ``FLUSH_BYTES`` (a long body: the real transport's buffer and
    flow control see it as before). ``close`` sends what is waiting first; the rest is the real
    transport's."""

    FLUSH_BYTES = 64 * 1024

    def __init__(self, transport, loop):
        self._transport = transport
        self._loop = loop
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._parts:
            self._loop.call_soon(self._flush)
        self._parts.append(data)
        self._size += len(data)
        if self._size >= self.FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._parts:
            return
        data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts, self._size = [], 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._parts, self._size = [], 0
        self._transport.abort()

    def __getattr__(self, name):
        return getattr(self._transport, name)


class GuardedHttpTools(HttpToolsProtocol):
    max_header_bytes = 64 * 1024
    header_timeout_s = 30.0

    def connection_made(self, transport) -> None:
        super().connection_made(OneSendPerTurn(transport, self.loop))
        self._reported = 0  # the current head's URL and finished headers, as the parser reports them
        self._pending = 0  # bytes of reads that ended inside the current head
        self._head_open = True  # from a request's end (or the connection's start) to its headers' end
        self._too_large = False
        self._ended = False  # a request ended during the current read
        self._head_since = self.loop.time()
        self.loop.call_later(self.header_timeout_s, self._check_deadline)

    # -- size --------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._ended = False
        super().data_received(data)
        # A read that began and ended inside one head: the parser holds all of it, reported or
        # not. (Each count is at most the head's size: neither refuses a head within the limit.)
        if self._head_open and not self._ended and not self._too_large:
            self._pending += len(data)
            if self._pending > self.max_header_bytes and not self.transport.is_closing():
                self._refuse()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._reported += n
        if self._reported > self.max_header_bytes:
            self._too_large = True
            raise HeadersTooLarge  # stops the parser; uvicorn then calls send_400_response

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._too_large = True
        self.transport.write(_REFUSAL)
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_open = True  # what follows (pipelined or not) is the next request's head
        self._ended = True
        self._reported = self._pending = 0

    # -- time --------------------------------------------------------------------------------

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head_since = self.loop.time()

    def _check_deadline(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        # From the connection's start or the last response on, the next request's headers must
        # be complete within the deadline (while a request is being answered, nothing is awaited).
        waiting = self.cycle is None or self.cycle.response_complete
        late = self.loop.time() - self._head_since
        if waiting and late >= self.header_timeout_s:
            self.transport.close()
            return
        self.loop.call_later(self.header_timeout_s - late if waiting else self.header_timeout_s, self._check_deadline)


def uvicorn_options(settings: Settings, header_timeout_s: float) -> dict:
    limits = settings.limits
    protocol = type("StillreelHttpTools", (GuardedHttpTools,),
                    {"header_timeout_s": header_timeout_s, "max_header_bytes": limits.max_header_bytes})
    return {
        "http": protocol,
        "timeout_keep_alive": limits.keep_alive_s,
        "proxy_headers": False,
        "access_log": False,  # uvicorn logs at "warning": its access lines (info) were built and dropped
    }
