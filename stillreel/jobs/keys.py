"""API keys (``KEY_ID:SECRET``, stored hashed) and the short-lived upload tokens fal's CDN uses.

Secrets are random 32-byte values, so one SHA-256 is a sound hash (no password stretching needed);
comparison is constant-time. Upload tokens are HMAC-signed ``key_id.expiry`` strings, signed with a
server secret kept in the database so that every API replica accepts every other's tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from stillreel.jobs.schema import api_keys, server_secrets
from stillreel.jobs.store import JobStore

TOKEN_LIFETIME_S = 3600  # upload tokens: fal_client asks for a new one when this one expires


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    name: str | None
    created_at: float
    revoked_at: float | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def server_secret(store: JobStore, name: str, make=lambda: secrets.token_hex(32)) -> str:
    """A secret shared by every process using this database, created on first use.

    Created atomically: the insert does nothing if another process got there first, and every
    process then reads the one stored value, so replicas starting together agree on it.
    """
    t = server_secrets.c
    with store.read() as conn:
        value = conn.execute(sa.select(t.value).where(t.name == name)).scalar()
    if value is None:
        dialect = sqlite_insert if store.sqlite else pg_insert
        with store.write() as conn:
            conn.execute(dialect(server_secrets).values(name=name, value=make()).on_conflict_do_nothing())
            value = conn.execute(sa.select(t.value).where(t.name == name)).scalar_one()
    return value


def secret_bytes(value: str) -> bytes:
    """A stored secret as bytes: 64 hex digits are 32 random bytes, anything else its UTF-8."""
    return bytes.fromhex(value) if len(value) == 64 else value.encode()


class Keys:
    def __init__(self, store: JobStore):
        self.store = store
        self._token_secret: bytes | None = None
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._revocations: tuple | None = None  # (revoked keys, last revocation) last seen

    # -- management --------------------------------------------------------------------------

    def create(self, name: str | None = None) -> str:
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        with self.store.write() as conn:
            conn.execute(api_keys.insert().values(
                key_id=key_id, secret_hash=_hash(secret), name=name, created_at=time.time()
            ))
        return f"{key_id}:{secret}"

    def list(self) -> list[KeyInfo]:
        with self.store.read() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).mappings()
            return [KeyInfo(r["key_id"], r["name"], r["created_at"], r["revoked_at"]) for r in rows]

    def revoke(self, key_id: str) -> bool:
        with self.store.write() as conn:
            n = conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            ).rowcount
        self._cache.clear()
        return n == 1

    def watch_revocations(self) -> None:
        """Forget remembered answers once any key was revoked, by any process (``stillreel keys
        revoke``, another replica): the server's housekeeping calls this every 0.5 s, so a revoked
        key stops working within about that time everywhere instead of the cache's 5 s."""
        with self.store.read() as conn:
            mark = tuple(conn.execute(
                sa.select(sa.func.count(api_keys.c.revoked_at), sa.func.max(api_keys.c.revoked_at))
            ).one())
        if self._revocations is not None and mark != self._revocations:
            self._cache.clear()
        self._revocations = mark

    def count_active(self) -> int:
        with self.store.read() as conn:
            return conn.execute(
                sa.select(sa.func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None))
            ).scalar_one()

    # -- verification ------------------------------------------------------------------------

    MISSING = object()

    def cached(self, credentials: str):
        """The remembered answer for these credentials, or ``Keys.MISSING``."""
        hit = self._cache.get(credentials)
        return hit[1] if hit and hit[0] > time.monotonic() else self.MISSING

    def verify(self, credentials: str) -> str | None:
        """The key id for valid ``KEY_ID:SECRET`` credentials, else None."""
        key_id, sep, secret = credentials.partition(":")
        if not sep or not key_id or not secret:
            return None
        digest = _hash(secret)
        # Status polls arrive at 10 Hz per client: remember recent answers for a few seconds
        # (a revoked key stops working within that time on other replicas, at once on this one).
        now = time.monotonic()
        if (hit := self.cached(credentials)) is not self.MISSING:
            return hit
        with self.store.read() as conn:
            row = conn.execute(
                sa.select(api_keys.c.secret_hash).where(
                    api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None)
                )
            ).first()
        ok = row is not None and hmac.compare_digest(row[0], digest)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[credentials] = (now + 5.0, key_id if ok else None)
        return key_id if ok else None

    def _secret(self) -> bytes:
        if self._token_secret is None:
            self._token_secret = secret_bytes(server_secret(self.store, "upload_token"))
        return self._token_secret

    def issue_token(self, key_id: str | None) -> tuple[str, dt.datetime]:
        expires = int(time.time()) + TOKEN_LIFETIME_S
        payload = f"{key_id or '-'}.{expires}"
        sig = hmac.new(self._secret(), payload.encode(), hashlib.sha256).digest()
        token = f"{payload}.{base64.urlsafe_b64encode(sig).decode().rstrip('=')}"
        return token, dt.datetime.fromtimestamp(expires, dt.timezone.utc)

    def verify_token(self, token: str) -> str | None:
        try:
            key_id, expires, sig = token.split(".")
            expected = hmac.new(self._secret(), f"{key_id}.{expires}".encode(), hashlib.sha256).digest()
            given = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
        except ValueError:
            return None
        if not hmac.compare_digest(expected, given) or int(expires) < time.time():
            return None
        # "-" tokens come from a server running without auth; they grant nothing once auth is on.
        if key_id == "-" or not self.active(key_id):
            return None
        return key_id

    def active(self, key_id: str) -> bool:
        """True while the key exists and is not revoked (tokens made from it die with it)."""
        with self.store.read() as conn:
            return conn.execute(
                sa.select(api_keys.c.key_id).where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            ).first() is not None
