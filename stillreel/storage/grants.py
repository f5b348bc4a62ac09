"""Upload grants: signed, expiring capabilities to write one file.

fal's JS client PUTs to the ``upload_url`` it was handed without any credentials (and its
multipart parts to ``{upload_url path}/{n}{query}``), so the URL itself must carry the right to
write: a grant names the key, the staging id, the declared type and an expiry, and is signed with
a server secret (HMAC-SHA256). The same grant string is the ``uploadId`` of the Python client's
multipart uploads, so no upload state is kept anywhere but in the storage's staging area.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

SINGLE_TTL_S = 3600
MULTIPART_TTL_S = 24 * 3600


@dataclass(frozen=True)
class UploadGrant:
    key: str
    upload_id: str  # staging id for multipart parts (32 hex)
    content_type: str
    file_name: str | None
    expires: int  # unix seconds
    multipart: bool
    lifetime: float | None = None  # X-Fal-Object-Lifecycle seconds, asked for at initiate

    def sign(self, secret: bytes) -> str:
        body = json.dumps(
            {
                "k": self.key,
                "u": self.upload_id,
                "t": self.content_type,
                "n": self.file_name,
                "e": self.expires,
                "m": int(self.multipart),
                **({"l": self.lifetime} if self.lifetime else {}),
            },
            separators=(",", ":"),
        ).encode()
        payload = _b64(body)
        return f"{payload}.{_b64(_mac(secret, payload))}"

    @classmethod
    def verify(cls, token: str, secret: bytes, now: float | None = None) -> UploadGrant | None:
        """The grant a token carries, or None when it is forged, malformed or expired."""
        payload, sep, signature = (token or "").partition(".")
        if not sep:
            return None
        try:
            given = _unb64(signature)
            if not hmac.compare_digest(given, _mac(secret, payload)):
                return None
            data = json.loads(_unb64(payload))
            grant = cls(
                key=str(data["k"]),
                upload_id=str(data["u"]),
                content_type=str(data["t"]),
                file_name=data["n"],
                expires=int(data["e"]),
                multipart=bool(data["m"]),
                lifetime=float(data["l"]) if data.get("l") else None,
            )
        except (ValueError, KeyError, TypeError):
            return None
        if grant.expires < (time.time() if now is None else now):
            return None
        return grant


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, b"stillreel-upload:" + payload.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
