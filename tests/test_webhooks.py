"""Webhook URLs and delivery under hostile conditions: malformed and private ``fal_webhook`` values
(refused at submit, and harmless when already in the outbox), receivers that hang or trickle,
retries that run out, and several dispatchers sharing one outbox. Real HTTP receivers on
loopback; SQLite and PostgreSQL."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest
from apihelp import IMAGE, V2
from conftest import store_url
from fastapi.testclient import TestClient

from stillreel.api.app import create_app
from stillreel.config import Limits, Settings
from stillreel.jobs.schema import webhook_outbox
from stillreel.jobs.store import JobStore
from stillreel.jobs.webhooks import Dispatcher, Signer


class Receiver:
    """A loopback webhook receiver. ``mode``: "ok", "fail" (500), "hang" (answers only when
    released), "trickle" (a status line one byte at a time), or a redirect to ``location``."""

    def __init__(self, mode: str = "ok", location: str | None = None):
        self.calls: list[dict] = []
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.calls.append({"at": time.monotonic(), "body": body, "headers": dict(self.headers)})
                if mode == "hang":
                    outer.release.wait(30)
                if mode == "trickle":
                    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 100:
                        if outer.release.wait(0.3):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    return
                status = {"ok": 200, "fail": 500, "hang": 200, "redirect": 302}[mode]
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(mode="ok", location=None) -> Receiver:
        made.append(Receiver(mode, location))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def add_rows(store: JobStore, *urls: str, at: float | None = None) -> list[int]:
    """Outbox rows written straight to the table, as an older version (or another replica) might
    have; all due at the same instant unless ``at`` says otherwise."""
    at = time.time() - 1 if at is None else at
    seqs = []
    with store.write() as conn:
        for i, url in enumerate(urls):
            seqs.append(conn.execute(webhook_outbox.insert().values(
                request_id=f"req-{i}", url=url, body=json.dumps({"request_id": f"req-{i}", "status": "OK"}),
                attempts=0, next_attempt_at=at, state="pending",
            )).inserted_primary_key[0])
    return seqs


def rows(store: JobStore) -> dict[int, dict]:
    with store.read() as conn:
        return {r["seq"]: dict(r) for r in conn.execute(webhook_outbox.select()).mappings()}


def running(dispatcher: Dispatcher) -> threading.Thread:
    thread = threading.Thread(target=dispatcher.run, kwargs={"poll_s": 0.1}, daemon=True)
    thread.start()
    return thread


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- at submit ------------------------------------------------------------------------------------

REFUSED = [
    ("http://0177.0.0.1:8497/hook", "url_parsing"),  # octal 127.0.0.1: httpx cannot even parse it
    ("http://2130706433/hook", "url_parsing"),  # 127.0.0.1 as one number
    ("http://0x7f.1/hook", "url_parsing"),
    ("http://127.1/hook", "url_parsing"),
    ("http://127.0.0.1./hook", "url_parsing"),
    ("http://127.0.0.1:8000/hook", "value_error"),
    ("http://localhost:8000/hook", "value_error"),
    ("http://[::1]:8000/hook", "value_error"),
    ("http://[::ffff:127.0.0.1]/hook", "value_error"),
    ("http://[::127.0.0.1]/hook", "value_error"),
    ("http://[64:ff9b::10.0.0.1]/hook", "value_error"),
    ("http://[2002:7f00:1::1]/hook", "value_error"),
    ("http://169.254.169.254/latest/meta-data/", "value_error"),
    ("http://10.0.0.1/hook", "value_error"),
    ("http://0.0.0.0:8000/hook", "value_error"),
    ("ftp://example.com/hook", "url_scheme"),
    ("file:///etc/passwd", "url_scheme"),
    ("example.com/hook", "url_scheme"),
    ("http:///hook", "url_parsing"),
    ("http://[::1/hook", "url_parsing"),
    ("http://exa mple.com/hook", "url_parsing"),
    ("http://example.com/\x00hook", "url_parsing"),  # was a 500 on PostgreSQL
    ("http://example.com/hook\r\nX-Injected: 1", "url_parsing"),
    ("https://example.com/" + "a" * 3000, "url_too_long"),
]


@pytest.fixture
def api(database_url, tmp_path):
    def make(**limits) -> TestClient:
        settings = Settings(data_dir=tmp_path / "data", database_url=store_url(database_url), auth=False,
                            limits=Limits(**limits))
        return TestClient(create_app(settings, run_services=False))

    return make


def test_submit_refuses_malformed_and_private_webhook_urls(api):
    with api() as client:
        for url, error_type in REFUSED:
            r = client.post(f"/queue/{V2}", params={"fal_webhook": url}, json={"prompt": "p", "image_url": IMAGE})
            assert r.status_code == 422, (url, r.status_code, r.text)
            (error,) = r.json()["detail"]
            assert error["loc"] == ["query", "fal_webhook"] and error["type"] == error_type, (url, error)
            assert error["msg"]
        # Public destinations pass (a name that does not resolve here too: each delivery checks
        # again), and so does an empty parameter (no webhook).
        for url in ["http://8.8.8.8/hook", "https://[2606:4700:4700::1111]:8443/h?x=1",
                    "https://hooks.example.com/fal", ""]:
            r = client.post(f"/queue/{V2}", params={"fal_webhook": url}, json={"prompt": "p", "image_url": IMAGE})
            assert r.status_code == 200, (url, r.text)
            job = client.app.state.services.store.get(r.json()["request_id"])
            assert job.webhook_url == (url or None)


def test_allow_private_urls_lets_loopback_webhooks_through(api):
    with api(allow_private_urls=True) as client:
        for url in ["http://127.0.0.1:8000/hook", "http://localhost:8000/hook", "http://[::1]:8000/hook"]:
            r = client.post(f"/queue/{V2}", params={"fal_webhook": url}, json={"prompt": "p", "image_url": IMAGE})
            assert r.status_code == 200, (url, r.text)
        # Ambiguous spellings stay refused: they cannot be delivered as written.
        r = client.post(f"/queue/{V2}", params={"fal_webhook": "http://0177.0.0.1:8497/hook"},
                        json={"prompt": "p", "image_url": IMAGE})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "fal_webhook"]


# -- delivery -------------------------------------------------------------------------------------


def test_a_poison_row_does_not_stop_other_deliveries(store, receivers, database_url):
    good = receivers("ok")
    poison = ["http://0177.0.0.1:8497/hook", "http://exa mple.com/", "ftp://x/", "not a url", "http://[::1/",
              "http://" + "a" * 70 + ".example/"]
    if "postgres" not in database_url:
        poison.append("http://a\x00b/")  # PostgreSQL could never have stored it
    bad = add_rows(store, *poison)  # first in line, due at the same instant as the good ones
    fine = add_rows(store, *[good.url] * 5)
    dispatcher = Dispatcher(store, Signer(store), backoff_s=(0.1,), timeout_s=5, allow_private=True)
    running(dispatcher)
    try:
        assert wait_until(lambda: len(good.calls) == 5, 10), f"{len(good.calls)} of 5 delivered"
        assert wait_until(lambda: all(rows(store)[s]["state"] != "pending" for s in bad + fine), 10)
    finally:
        dispatcher.stop()
    table = rows(store)
    assert all(table[s]["state"] == "delivered" for s in fine)
    for seq in bad:
        assert table[seq]["state"] == "failed" and table[seq]["last_error"], table[seq]
        assert "\x00" not in table[seq]["last_error"]


def test_the_dispatcher_refuses_private_destinations(store, receivers):
    hook = receivers("ok")
    literal, named = add_rows(store, hook.url, f"http://localhost:{hook.port}/hook")
    mapped, = add_rows(store, f"http://[::ffff:127.0.0.1]:{hook.port}/hook")
    dispatcher = Dispatcher(store, Signer(store), backoff_s=(60,), timeout_s=5)  # no allow_private
    try:
        assert dispatcher.deliver_due() == 3
    finally:
        dispatcher.stop()
    assert hook.calls == []
    table = rows(store)
    assert table[literal]["state"] == table[mapped]["state"] == "failed"  # an address never changes
    # A name is looked up at each attempt (its DNS may change): refused now, tried again later.
    assert table[named]["state"] == "pending" and table[named]["attempts"] == 1
    assert table[named]["next_attempt_at"] > time.time() + 30
    assert all("private or local" in table[s]["last_error"] for s in (literal, named, mapped))


def test_redirects_are_not_followed(store, receivers):
    target = receivers("ok")
    bouncer = receivers("redirect", location=target.url)
    seq, = add_rows(store, bouncer.url)
    dispatcher = Dispatcher(store, Signer(store), backoff_s=(), timeout_s=5, allow_private=True)
    try:
        dispatcher.deliver_due()
    finally:
        dispatcher.stop()
    assert len(bouncer.calls) == 1 and target.calls == []
    assert rows(store)[seq]["state"] == "failed" and rows(store)[seq]["last_error"] == "HTTP 302"


def test_hanging_receivers_do_not_delay_a_healthy_one(store, receivers):
    hung = [receivers("hang") for _ in range(4)]
    healthy = receivers("ok")
    add_rows(store, *[h.url for h in hung])
    add_rows(store, healthy.url, at=time.time() - 0.5)  # due after the hung ones
    dispatcher = Dispatcher(store, Signer(store), backoff_s=(60,), timeout_s=15, allow_private=True)
    started = time.monotonic()
    running(dispatcher)
    try:
        assert wait_until(lambda: healthy.calls, 5), "the healthy receiver waited behind the hung ones"
        assert healthy.calls[0]["at"] - started < 5
        assert wait_until(lambda: all(h.calls for h in hung), 5)  # being tried at the same time
    finally:
        for h in hung:
            h.release.set()
        dispatcher.stop()


def test_a_trickling_receiver_is_cut_off_at_the_timeout(store, receivers):
    slow = receivers("trickle")
    seq, = add_rows(store, slow.url)
    dispatcher = Dispatcher(store, Signer(store), backoff_s=(60,), timeout_s=1.5, allow_private=True)
    started = time.monotonic()
    try:
        dispatcher.deliver_due()
    finally:
        dispatcher.stop()
    # httpx's timeouts are per read; a byte every 0.3 s would have kept it going for 30 s.
    assert time.monotonic() - started < 10
    row = rows(store)[seq]
    assert row["state"] == "pending" and row["attempts"] == 1 and "Timeout" in row["last_error"]


def test_retries_end_in_failed(store, receivers):
    down = receivers("fail")
    seq, = add_rows(store, down.url)
    dispatcher = Dispatcher(store, Signer(store), backoff_s=(0.05, 0.05), timeout_s=5, allow_private=True)
    try:
        assert wait_until(lambda: dispatcher.deliver_due() == 0 and rows(store)[seq]["state"] != "pending", 10)
    finally:
        dispatcher.stop()
    row = rows(store)[seq]
    assert row["state"] == "failed" and row["attempts"] == 3 and row["last_error"] == "HTTP 500"
    assert len(down.calls) == 3


def test_each_row_is_delivered_once_by_several_dispatchers(database_url, receivers):
    hook = receivers("ok")
    stores = [JobStore(store_url(database_url)) for _ in range(3)]  # three API replicas
    seqs = add_rows(stores[0], *[hook.url] * 30)
    dispatchers = [Dispatcher(s, Signer(s), backoff_s=(0.1,), timeout_s=5, allow_private=True, concurrency=4)
                   for s in stores]
    for d in dispatchers:
        running(d)
    try:
        assert wait_until(lambda: all(r["state"] == "delivered" for r in rows(stores[0]).values()), 20)
        time.sleep(0.3)
    finally:
        for d in dispatchers:
            d.stop()
        for s in stores:
            s.close()
    ids = [json.loads(c["body"])["request_id"] for c in hook.calls]
    assert len(ids) == len(seqs) == len(set(ids)), sorted(ids)


def test_a_lapsed_claim_records_nothing(store):
    seq, = add_rows(store, "http://8.8.8.8/hook")
    (first,) = store.outbox_claim(hold_s=-1)  # a claim that has already lapsed…
    (second,) = store.outbox_claim(hold_s=60)  # …taken over by another dispatcher
    assert not store.outbox_done(seq, ok=False, error="late", retry_at=None, held_until=first["next_attempt_at"])
    assert rows(store)[seq]["state"] == "pending"
    assert store.outbox_done(seq, ok=True, error=None, retry_at=None, held_until=second["next_attempt_at"])
    assert rows(store)[seq]["state"] == "delivered"


def test_a_claim_about_to_lapse_is_not_sent(store, receivers):
    """A dispatcher that got to a row too late to finish within its claim (a stalled database,
    say) leaves it alone: sending could overlap another dispatcher's claim of the same row."""
    hook = receivers("ok")
    seq, = add_rows(store, hook.url)
    dispatcher = Dispatcher(store, Signer(store), backoff_s=(60,), timeout_s=5, allow_private=True)
    try:
        (row,) = store.outbox_claim(hold_s=8)  # less than the timeout and its margin are left
        dispatcher._deliver(row)
    finally:
        dispatcher.stop()
    assert hook.calls == []
    left = rows(store)[seq]
    assert left["state"] == "pending" and left["attempts"] == 0 and left["next_attempt_at"] == row["next_attempt_at"]
