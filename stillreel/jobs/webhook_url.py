"""Checking a ``fal_webhook`` URL: once at submit (a 422 for the caller) and again before each
delivery (a row written before this check existed, or by another version, must not poison the
outbox).

The host is classified the way the connection would see it: httpx parses the URL (so what passes
here is what the dispatcher can send), literal IP addresses in every spelling the C library
accepts (``0177.0.0.1``, ``2130706433``, ``0x7f.1``) are refused unless written as a plain
dotted quad, and names are resolved and refused when no address is public.
"""

from __future__ import annotations

import ipaddress
import socket

import httpx

from stillreel.media.fetch import is_public_address

MAX_LENGTH = 2048  # fal documents none; browsers and proxies commonly stop near here


class WebhookURLError(ValueError):
    """``error_type`` follows pydantic's names for URL errors, as fal's 422s do."""

    def __init__(self, message: str, error_type: str = "value_error"):
        super().__init__(message)
        self.message = message
        self.error_type = error_type


def _numeric_label(label: str) -> bool:
    label = label.lower()
    if label.startswith("0x"):
        return all(c in "0123456789abcdef" for c in label[2:])
    return label.isdigit()


def literal_address(host: str) -> str | None:
    """The IP address ``host`` is, if it is one; ``None`` for a name.

    A host whose last label is a number is an IPv4 address to the C library (and to browsers), so
    it must be a canonical dotted quad: anything else is ambiguous and refused."""
    if ":" in host:
        try:
            return str(ipaddress.ip_address(host.split("%", 1)[0]))
        except ValueError:
            raise WebhookURLError(f"the host {host!r} is not a valid IPv6 address", "url_parsing") from None
    labels = host.rstrip(".").split(".")
    if not _numeric_label(labels[-1]):
        return None
    try:
        canonical = str(ipaddress.IPv4Address(host))
    except ValueError:
        canonical = None
    if canonical is None or canonical != host:
        raise WebhookURLError(
            f"the host {host!r} looks like an IPv4 address but is not a plain dotted quad", "url_parsing"
        )
    return canonical


def check_webhook_url(url: str, allow_private: bool, resolve: bool = True) -> httpx.URL:
    """Raise ``WebhookURLError`` unless ``url`` is an http(s) URL we are willing to POST to.

    ``resolve``: also look the name up (at submit). Delivery leaves that to the guarded
    connection, which checks the addresses it actually connects to."""
    if not isinstance(url, str) or not url:
        raise WebhookURLError("the webhook URL is empty", "url_parsing")
    if len(url) > MAX_LENGTH:
        raise WebhookURLError(f"the webhook URL is longer than {MAX_LENGTH} characters", "url_too_long")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        # Includes NUL, which PostgreSQL cannot store in a text column.
        raise WebhookURLError("the webhook URL contains spaces or control characters", "url_parsing")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise WebhookURLError(f"the webhook URL cannot be parsed: {exc}", "url_parsing") from None
    if parsed.scheme not in ("http", "https"):
        raise WebhookURLError("the webhook URL must start with http:// or https://", "url_scheme")
    host = parsed.host
    if not host:
        raise WebhookURLError("the webhook URL has no host", "url_parsing")
    address = literal_address(host)
    if allow_private:
        return parsed
    if address is not None:
        if not is_public_address(address):
            raise WebhookURLError(f"the webhook host {host} is a private or local address")
        return parsed
    if resolve:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            # Not known now is not proof of anything: the name may be published later, and each
            # delivery checks again before it connects.
            return parsed
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not any(is_public_address(a) for a in addresses):
            raise WebhookURLError(f"the webhook host {host} resolves to a private or local address ({addresses[0]})")
    return parsed
