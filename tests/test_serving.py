"""uvicorn as ``stillreel serve`` runs it (stillreel/api/serving.py): httptools with a bound on
the request head (431, connection closed) and a deadline for headers; ordinary requests, bodies
and pipelined requests are untouched by either."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn
from live_server import free_port

from stillreel.api.serving import GuardedHttpTools, OneSendPerTurn, uvicorn_options
from stillreel.config import Limits, Settings

LIMIT = 16 * 1024


async def echo(scope, receive, send):
    """Answers every request with the size of the body it read and of its headers."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    head = sum(len(k) + len(v) for k, v in scope["headers"])
    body = f"{scope['path']} body={size} head={head}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def server():
    settings = Settings(limits=Limits(max_header_bytes=LIMIT, keep_alive_s=30))
    options = uvicorn_options(settings, header_timeout_s=1.0)
    assert issubclass(options["http"], GuardedHttpTools)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(echo, host="127.0.0.1", port=port, log_level="error", lifespan="off",
                                        **options))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield port
    srv.should_exit = True
    thread.join(15)


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10)
    return s


def _read_all(s: socket.socket) -> bytes:
    """Everything until the server closes the connection (raises socket.timeout if it never does)."""
    chunks = []
    try:
        while chunk := s.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def _read_responses(s: socket.socket, n: int) -> list[bytes]:
    """The next ``n`` responses on the connection, each as its status line's rest + body."""
    data, out = b"", []
    while len(out) < n:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1")
            length = int(next(line.split(":")[1] for line in head.split("\r\n") if line.lower().startswith("content-length")))
            if len(data) >= head_end + 4 + length:
                out.append(data[len("HTTP/1.1 "):head_end].split(b"\r\n")[0] + b" " + data[head_end + 4:head_end + 4 + length])
                data = data[head_end + 4 + length:]
                continue
        chunk = s.recv(65536)
        assert chunk, (len(out), data[-200:])
        data += chunk
    return out


def _send_slowly(s: socket.socket, data: bytes, piece: int) -> None:
    for i in range(0, len(data), piece):
        try:
            s.sendall(data[i:i + piece])
        except (BrokenPipeError, ConnectionResetError):
            return
        time.sleep(0.001)


def test_ordinary_requests_keep_alive_and_pipelined(server):
    with _connect(server) as s:
        for i in range(3):  # one connection, one request after the other
            s.sendall(b"GET /a%d HTTP/1.1\r\nHost: x\r\nAuthorization: Key abc\r\n\r\n" % i)
            (answer,) = _read_responses(s, 1)
            assert answer.startswith(b"200 ") and answer.endswith(b"/a%d body=0 head=25" % i)
        # Many requests in one write, together far more than the head limit: each is its own head.
        n = 600
        batch = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % (i, b"p" * 40) for i in range(n))
        assert len(batch) > 2 * LIMIT
        s.sendall(batch)
        answers = _read_responses(s, n)
        assert len(answers) == n and all(a.startswith(b"200 ") for a in answers)
        assert answers[-1].endswith(b"/p%d body=0 head=50" % (n - 1))


def test_head_just_under_the_limit_and_large_bodies_pass(server):
    with _connect(server) as s:
        # A head close to the limit, arriving in many small reads.
        request = b"GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (LIMIT - 200) + b"\r\n\r\n"
        _send_slowly(s, request, 1024)
        (answer,) = _read_responses(s, 1)
        assert answer.startswith(b"200 ")
        # A body many times the head limit, in one write: body bytes are not head bytes.
        body = b"x" * (20 * LIMIT)
        s.sendall(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        (answer,) = _read_responses(s, 1)
        assert answer.startswith(b"200 ") and b"body=%d" % len(body) in answer


@pytest.mark.parametrize("piece", [4096, None], ids=["in pieces", "in one write"])
@pytest.mark.parametrize("shape", ["one header", "many headers", "long url", "unfinished header"])
def test_a_100kb_head_is_refused_with_431_and_the_connection_closed(server, shape, piece):
    big = 100 * 1024
    if shape == "one header":
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"j" * big + b"\r\n\r\n"
    elif shape == "many headers":
        request = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-J%d: %s\r\n" % (i, b"j" * 1000) for i in range(100))
        request += b"\r\n"
    elif shape == "long url":
        request = b"GET /" + b"u" * big + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    else:  # a header that never ends: the server must stop reading it, not wait for its end
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"j" * big
    with _connect(server) as s:
        _send_slowly(s, request, piece or len(request))
        answer = _read_all(s)  # returns only once the server closed the connection
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert b"connection: close" in answer
    assert b" 200 " not in answer


def test_a_head_too_large_after_good_requests_is_refused_too(server):
    with _connect(server) as s:
        s.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_responses(s, 1)[0].startswith(b"200 ")
        _send_slowly(s, b"GET / HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"j" * (100 * 1024) + b"\r\n\r\n", 8192)
        assert _read_all(s).startswith(b"HTTP/1.1 431 ")


def test_headers_trickled_past_the_deadline_close_the_connection(server):
    with _connect(server) as s:
        s.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")  # answered; the deadline starts again
        assert _read_responses(s, 1)[0].startswith(b"200 ")
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        for _ in range(50):  # one header line now and then, never the end of the head
            try:
                s.sendall(b"X-A: b\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    break
            except BlockingIOError:
                pass
            finally:
                s.settimeout(10)
        else:
            pytest.fail("the connection stayed open while its headers were trickled")
        s.settimeout(10)
        assert _read_all(s) == b""


def test_serve_options_use_httptools_with_the_configured_bounds():
    options = uvicorn_options(Settings(limits=Limits(max_header_bytes=1234, keep_alive_s=7)), 9.0)
    assert options["http"].max_header_bytes == 1234 and options["http"].header_timeout_s == 9.0
    assert options["timeout_keep_alive"] == 7 and options["proxy_headers"] is False


class RecordingTransport:
    """What the real transport was asked to send, and whether it was closed."""

    def __init__(self):
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1) if name == "peername" else default


def test_writes_of_one_turn_leave_in_one_send():
    """A response's head and body (two writes by uvicorn) go out as one send at the end of the
    event loop's turn; a long body at once; ``close`` sends what waits first; nothing after it."""
    import asyncio

    async def main():
        real = RecordingTransport()
        transport = OneSendPerTurn(real, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"body")
        assert real.sent == []
        await asyncio.sleep(0)
        assert real.sent == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        big = b"x" * OneSendPerTurn.FLUSH_BYTES
        transport.write(b"a")
        transport.write(big)  # past the bound: sent now, in order, with what waited
        assert real.sent[-1] == b"a" + big
        await asyncio.sleep(0)
        assert len(real.sent) == 2  # nothing left for the end of the turn
        transport.write(b"last")
        transport.close()
        assert real.sent[-1] == b"last" and real.closed
        transport.write(b"late")  # uvicorn may write to a closing transport: dropped, as it would be
        await asyncio.sleep(0)
        assert real.sent[-1] == b"last"
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the real one's
        aborted = OneSendPerTurn(RecordingTransport(), asyncio.get_running_loop())
        aborted.write(b"never")
        aborted.abort()
        await asyncio.sleep(0)
        assert aborted._transport.sent == []

    asyncio.run(main())


def test_answers_on_one_connection_stay_whole_and_in_order(server):
    """Pipelined requests on one keep-alive connection: each answer complete, in request order
    (their heads and bodies are joined per turn, never across answers in the wrong order)."""
    sock = socket.create_connection(("127.0.0.1", server))
    try:
        sock.sendall(b"".join(f"GET /p{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(20)))
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 200") < 20 and time.monotonic() < deadline:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            data += sock.recv(65536)
        bodies = [part.split(b"\r\n\r\n", 1)[1][:20] for part in data.split(b"HTTP/1.1 200 OK")[1:]]
        assert [b.split(b" ")[0] for b in bodies] == [f"/p{i}".encode() for i in range(20)]
    finally:
        sock.close()
