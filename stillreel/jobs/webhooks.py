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

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from stillreel.jobs.keys import server_secret
from stillreel.jobs.store import JobStore

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


class Dispatcher:
    """Delivers due outbox rows; several dispatchers (API replicas) may run against one database."""

    def __init__(self, store: JobStore, signer: Signer, backoff_s: tuple[float, ...], timeout_s: float = 15.0):
        self.store = store
        self.signer = signer
        self.backoff_s = backoff_s
        self.client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self.wake = threading.Event()
        self._stop = threading.Event()

    def deliver_due(self) -> int:
        rows = self.store.outbox_claim()
        for row in rows:
            self._deliver(row)
        return len(rows)

    def _deliver(self, row: dict) -> None:
        body = row["body"].encode()
        job = self.store.get(row["request_id"])
        user_id = (job.key_id if job and job.key_id else "anonymous")
        headers = {"Content-Type": "application/json", "User-Agent": "stillreel-webhooks"}
        headers.update(self.signer.headers(row["request_id"], user_id, body))
        error = None
        try:
            response = self.client.post(row["url"], content=body, headers=headers)
            if response.status_code >= 300:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempt = row["attempts"] + 1  # this one
        retry_at = None
        if error and attempt <= len(self.backoff_s):
            retry_at = time.time() + self.backoff_s[attempt - 1]
        if error:
            log.warning("webhook for %s to %s failed (attempt %d): %s", row["request_id"], row["url"], attempt, error)
        self.store.outbox_done(row["seq"], ok=error is None, error=error, retry_at=retry_at)

    def run(self, poll_s: float = 1.0) -> None:
        while not self._stop.is_set():
            try:
                busy = self.deliver_due()
            except Exception:  # a database hiccup must not end deliveries for good
                log.exception("webhook dispatcher error")
                busy = 0
            if not busy:
                self.wake.wait(poll_s)
                self.wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
