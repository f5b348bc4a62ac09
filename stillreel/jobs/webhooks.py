"""Webhook delivery from the outbox, signed the way fal signs (Ed25519, four X-Fal-Webhook-* headers).

Receivers verify against our JWKS at ``/.well-known/jwks.json`` (fal's format): the signed message
is ``"{request_id}\\n{user_id}\\n{timestamp}\\n{sha256_hex(body)}"``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from stillreel.jobs.keys import server_secret
from stillreel.jobs.store import JobStore
from stillreel.jobs.webhook_url import WebhookURLError, check_webhook_url
from stillreel.media.fetch import BlockedAddress, guarded_transport

log = logging.getLogger("stillreel.webhooks")


class Signer:
    def __init__(self, store: JobStore):
        # One key per database, whichever replica creates it first.
        raw = server_secret(store, "webhook_ed25519", lambda: Ed25519PrivateKey.generate().private_bytes_raw().hex())
        self.private_key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(raw))
        public = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key_b64 = base64.urlsafe_b64encode(public).decode().rstrip("=")
        self.kid = hashlib.sha256(public).hexdigest()[:16]

    def jwks(self) -> dict:
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": self.public_key_b64, "kid": self.kid,
                          "use": "sig", "alg": "EdDSA"}]}

    def headers(self, request_id: str, user_id: str, body: bytes, now: float | None = None) -> dict:
        timestamp = str(int(now if now is not None else time.time()))
        message = f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}"
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": user_id,
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": self.private_key.sign(message.encode()).hex(),
        }


class _Lapsed(Exception):
    pass


def _clean(error: str) -> str:
    """An error fit for ``last_error``: an exception may quote the URL, and PostgreSQL cannot
    store a NUL; one outsize message must not be what fails the bookkeeping."""
    text = "".join(c if c.isprintable() else "?" for c in error)
    return text if len(text) <= 500 else text[:500] + "…"


class Dispatcher:
    """Delivers due outbox rows; several dispatchers (API replicas) may run against one database.

    Up to ``concurrency`` deliveries run at once, so receivers that hang cost their own slots, not
    everyone's. Each delivery's connection ends within ``timeout_s`` (DNS included) and a claim
    holds its row for ``hold_s`` (several times longer), so a row is sent by one dispatcher only;
    a dispatcher whose claim ran out before it could send leaves the row to the next claim.
    """

    def __init__(self, store: JobStore, signer: Signer, backoff_s: tuple[float, ...], timeout_s: float = 15.0,
                 *, allow_private: bool = False, concurrency: int = 8):
        self.store = store
        self.signer = signer
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.concurrency = max(1, concurrency)
        self.hold_s = max(60.0, 4 * timeout_s)
        # No keep-alive: every delivery gets a fresh connection, checked against the guard and
        # bounded by the time budget from its own DNS lookup on. No redirects, no proxies.
        transport = guarded_transport(allow_private, max_connections=self.concurrency, keepalive=False,
                                      budget_s=timeout_s)
        self.client = httpx.Client(transport=transport, timeout=timeout_s, follow_redirects=False, trust_env=False)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="stillreel-webhook")
        self._busy = 0
        self._lock = threading.Lock()
        self.wake = threading.Event()
        self._stop = threading.Event()

    def _free(self) -> int:
        with self._lock:
            return self.concurrency - self._busy

    def _release(self) -> None:
        with self._lock:
            self._busy -= 1
        self.wake.set()  # a slot is free: claim more

    def _start(self, row: dict) -> Future | None:
        with self._lock:
            self._busy += 1

        def one() -> None:
            try:
                self._deliver(row)
            finally:
                self._release()

        try:
            return self.pool.submit(one)
        except RuntimeError:  # stopped: the row is delivered after its claim lapses
            self._release()
            return None

    def _claim(self) -> list[dict]:
        free = self._free()
        return self.store.outbox_claim(limit=free, hold_s=self.hold_s) if free > 0 else []

    def deliver_due(self) -> int:
        """Claim what is due (as many as there are free slots) and wait for those deliveries."""
        rows = self._claim()
        for future in [self._start(row) for row in rows]:
            if future is not None:
                future.result()
        return len(rows)

    def _post(self, row: dict) -> tuple[str | None, bool]:
        """Send one row: (error or None, whether retrying is pointless)."""
        try:
            check_webhook_url(row["url"], self.allow_private, resolve=False)
        except WebhookURLError as exc:
            return f"refused: {exc.message}", True
        body = row["body"].encode()
        job = self.store.get(row["request_id"])
        user_id = (job.key_id if job and job.key_id else "anonymous")
        headers = {"Content-Type": "application/json", "User-Agent": "stillreel-webhooks"}
        headers.update(self.signer.headers(row["request_id"], user_id, body))
        if time.time() > row["next_attempt_at"] - self.timeout_s - 5:
            # So late (a stalled database?) that the claim could lapse mid-send and another
            # dispatcher send it too: leave the row to the next claim.
            raise _Lapsed
        try:
            # Streamed and closed unread: the receiver's answer is its status; a body of any size
            # is never loaded.
            with self.client.stream("POST", row["url"], content=body, headers=headers) as response:
                status = response.status_code
        except BlockedAddress as exc:  # DNS may say otherwise later: retried like any failure
            return f"refused: {exc}", False
        if status >= 300:  # redirects included: they are not followed
            return f"HTTP {status}", False
        return None, False

    def _deliver(self, row: dict) -> None:
        held_until = row["next_attempt_at"]
        try:
            error, permanent = self._post(row)
        except _Lapsed:
            log.warning("webhook for %s not sent: its claim is about to lapse", row["request_id"])
            return
        except Exception as exc:  # anything at all: one row's failure stays with that row
            error, permanent = f"{type(exc).__name__}: {exc}", False
        attempt = row["attempts"] + 1  # this one
        retry_at = None
        if error:
            error = _clean(error)
            if not permanent and attempt <= len(self.backoff_s):
                retry_at = time.time() + self.backoff_s[attempt - 1]
            log.warning("webhook for %s to %s failed (attempt %d): %s", row["request_id"], _clean(row["url"]),
                        attempt, error)
        try:
            self.store.outbox_done(row["seq"], ok=error is None, error=error, retry_at=retry_at, held_until=held_until)
        except Exception:  # the row stays claimed and is retried when the claim lapses
            log.exception("webhook bookkeeping for %s failed", row["request_id"])

    def run(self, poll_s: float = 1.0) -> None:
        while not self._stop.is_set():
            try:
                rows = self._claim()
            except Exception:  # a database hiccup must not end deliveries for good
                log.exception("webhook dispatcher error")
                rows = []
            for row in rows:
                self._start(row)
            if not rows:
                self.wake.wait(poll_s)
                self.wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        # Deliveries under way finish (each within timeout_s); queued ones are dropped and their
        # rows delivered after the claim lapses.
        self.pool.shutdown(wait=False, cancel_futures=True)
