"""Fetching input files: our own stored files, ``data:`` URIs and http(s) URLs, with limits.

Remote fetches are guarded against SSRF at connect time: every address a host name resolves to
is checked, and the connection goes to the checked address (TLS still verifies the name), so a
DNS answer that changes between check and connect cannot reach a private network. Redirects are
followed by hand, each hop checked the same way.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
import time
from collections.abc import Sequence
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import httpcore
import httpx

from stillreel.config import Limits
from stillreel.engines.base import EngineError
from stillreel.storage import FileTooLarge, Storage

MAX_REDIRECTS = 5
USER_AGENT = "stillreel (input fetcher)"


class BlockedAddress(Exception):
    pass


# IPv6 ranges that carry an IPv4 address in their last 32 bits, which a translator (or the stack)
# may turn into a connection to that IPv4 address.
_EMBEDDING = [
    ipaddress.ip_network("::/96"),  # deprecated IPv4-compatible ::a.b.c.d (:: and ::1 included)
    ipaddress.ip_network("::ffff:0:0:0/96"),  # SIIT's IPv4-translated ::ffff:0:a.b.c.d
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64: the gateway connects to a.b.c.d
]
# Not globally reachable (IANA), though this Python's ``is_global`` says otherwise.
_NOT_GLOBAL = [
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    ipaddress.ip_network("fec0::/10"),  # site-local, deprecated but still routed by some stacks
]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, which a translator or tunnel may reach for us.

    ``ipaddress`` calls NAT64, 6to4 and IPv4-compatible addresses global whatever they embed, so
    ``64:ff9b::127.0.0.1`` would pass a plain ``is_global`` check. (Teredo's are listed for
    completeness: ``2001::/32`` is not global to begin with.)"""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    found = [ip.sixtofour] if ip.sixtofour is not None else []
    if any(ip in net for net in _EMBEDDING):
        found.append(low32)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # the socket connects to the IPv4 address itself
    if not ip.is_global or ip.is_multicast:
        return False
    if ip.version == 4:
        return True
    if any(ip in net for net in _NOT_GLOBAL):
        return False
    return all(is_public_address(str(v4)) for v4 in _embedded_ipv4(ip))


class _DeadlineStream(httpcore.NetworkStream):
    """A connection that ends at a fixed time: httpx's timeouts are per read, so a peer that
    trickles a byte now and then could otherwise hold it open for ever."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self.stream = stream
        self.deadline = deadline

    def _left(self, timeout: float | None) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the exchange took longer than its time limit")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self._left(timeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _DeadlineStream(self.stream.start_tls(ssl_context, server_hostname, self._left(timeout)), self.deadline)

    def get_extra_info(self, info: str):
        return self.stream.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves, refuses private targets, and connects to the address it checked.

    ``budget_s``: each connection lives at most this long, counted from before the DNS lookup."""

    def __init__(self, allow_private: bool, budget_s: float | None = None):
        self.allow_private = allow_private
        self.budget_s = budget_s

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        deadline = time.monotonic() + self.budget_s if self.budget_s is not None else None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror}") from exc
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        allowed = [a for a in addresses if self.allow_private or is_public_address(a)]
        if not allowed:
            raise BlockedAddress(f"{host} resolves to a private or local address ({addresses[0]})")
        error: Exception | None = None
        for address in allowed:
            try:
                stream = super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return stream if deadline is None else _DeadlineStream(stream, deadline)
        raise error  # type: ignore[misc]


def guarded_transport(allow_private: bool, *, max_connections: int = 20, keepalive: bool = True,
                      budget_s: float | None = None) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(retries=0)
    # httpx has no public knob for the network backend; the pool is rebuilt with the same
    # settings it would have had, plus the guard.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=max_connections,
        max_keepalive_connections=5 if keepalive else 0,
        keepalive_expiry=5.0,
        network_backend=_GuardedBackend(allow_private, budget_s),
    )
    return transport


def guarded_client(limits: Limits) -> httpx.Client:
    return httpx.Client(
        transport=guarded_transport(limits.allow_private_urls),
        timeout=httpx.Timeout(limits.fetch_timeout_s),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.8"},
    )


def field_loc(field: str | Sequence) -> tuple:
    """The normalized request's loc (no "body"; the endpoint maps it to fal's field names)."""
    return (field,) if isinstance(field, str) else tuple(field)


def field_name(field: str | Sequence) -> str:
    if isinstance(field, str):
        return field
    out = ""
    for part in field:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _shown(url: str) -> str:
    return url if len(url) <= 200 else url[:200] + "…"


class Fetcher:
    """Turns an input URL into bytes, or raises ``EngineError`` in fal's terms.

    ``field`` is the normalized request's attribute (``"start_image"``) or path
    (``("dynamic_masks", 0, "mask")``); errors carry it as their ``loc`` and the endpoint names its
    own fal field (``mapping.fal_loc``).
    """

    def __init__(self, storage: Storage | None, limits: Limits, client: httpx.Client | None = None):
        self.storage = storage
        self.limits = limits
        self._client = client
        self._own_client = client is None

    def close(self) -> None:
        if self._client is not None and self._own_client:
            self._client.close()
            self._client = None

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = guarded_client(self.limits)
        return self._client

    def _error(self, field, message: str, error_type: str = "file_download_error") -> EngineError:
        return EngineError(message, error_type, field_loc(field))

    def _too_large(self, field, size: int | None = None) -> EngineError:
        limit = self.limits.max_input_bytes
        got = f" ({size} bytes)" if size is not None else ""
        return self._error(
            field, f"The file at {field_name(field)} is too large{got}; the limit is {limit} bytes", "file_too_large"
        )

    def fetch(self, url: str, field: str | Sequence) -> bytes:
        if not isinstance(url, str) or not url.strip():
            raise self._error(field, f"{field_name(field)} is empty")
        url = url.strip()
        if url[:5].lower() == "data:":
            return self._data_uri(url, field)
        if self.storage is not None:
            key = self.storage.key_from_url(url)
            if key is not None:
                try:
                    return self.storage.read_bytes(key, max_bytes=self.limits.max_input_bytes)
                except FileTooLarge as exc:
                    raise self._too_large(field, exc.size) from None
                except FileNotFoundError:
                    raise self._error(field, f"The file at {field_name(field)} no longer exists: {_shown(url)}") from None
        try:
            return self._http(url, field)
        except (httpx.InvalidURL, ValueError) as exc:  # NUL, octal or malformed hosts: httpx, idna, urlsplit
            message = str(exc).encode("ascii", "backslashreplace").decode()[:200]
            raise self._error(field, f"{field_name(field)} is not a valid URL: {message}") from None

    def _data_uri(self, url: str, field) -> bytes:
        header, sep, payload = url[5:].partition(",")
        if not sep:
            raise self._error(field, f"{field_name(field)} is not a valid data URI (no comma)")
        limit = self.limits.max_input_bytes
        is_base64 = header.lower().split(";")[-1].strip() == "base64"
        if len(payload) * (3 / 4 if is_base64 else 1 / 3) > limit:
            raise self._too_large(field)
        if is_base64:
            text = unquote_to_bytes(payload) if "%" in payload else payload.encode("ascii", "ignore")
            text = b"".join(text.split()).replace(b"-", b"+").replace(b"_", b"/")
            try:
                data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise self._error(field, f"{field_name(field)} is not a valid base64 data URI") from None
        else:
            data = unquote_to_bytes(payload)
        if len(data) > limit:
            raise self._too_large(field, len(data))
        return data

    def _http(self, url: str, field) -> bytes:
        deadline = time.monotonic() + self.limits.fetch_timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            scheme = urlsplit(url).scheme.lower()
            if scheme not in ("http", "https"):
                raise self._error(
                    field, f"{field_name(field)} must be an http(s) URL or a data URI, got {_shown(url)}"
                )
            try:
                with self.client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if not response.is_success:
                        raise self._error(
                            field,
                            f"Failed to download {field_name(field)} from {_shown(url)}: HTTP {response.status_code}",
                        )
                    return self._read_capped(response, field, deadline)
            except BlockedAddress as exc:
                raise self._error(
                    field, f"Refusing to download {field_name(field)} from {_shown(url)}: {exc}"
                ) from None
            except httpx.TimeoutException:
                raise self._error(field, f"Timed out downloading {field_name(field)} from {_shown(url)}") from None
            except httpx.HTTPError as exc:
                raise self._error(
                    field, f"Failed to download {field_name(field)} from {_shown(url)}: {exc or type(exc).__name__}"
                ) from None
        raise self._error(field, f"Too many redirects downloading {field_name(field)} (more than {MAX_REDIRECTS})")

    def _read_capped(self, response: httpx.Response, field, deadline: float) -> bytes:
        limit = self.limits.max_input_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(field, int(declared))
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise self._too_large(field)
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("the download took longer than the fetch timeout")
        return bytes(body)
