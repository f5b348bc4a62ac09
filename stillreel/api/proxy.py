"""fal's proxy protocol (``@fal-ai/client``'s ``proxyUrl``): ``/api/fal/proxy`` + ``x-fal-target-url``.

The client sends every call to the proxy with the real destination in a header. We route it
inside this server by rewriting the ASGI scope, so streaming responses (the SSE status stream)
pass through untouched.
"""

from __future__ import annotations

import json
import urllib.parse

PROXY_PATH = "/api/fal/proxy"

# fal's hosts and where each lives on this server.
_PREFIX = {
    "fal.run": "",
    "falrun.com": "",
    "queue.fal.run": "/queue",
    "queue.falrun.com": "/queue",
    "rest.fal.ai": "",
    "rest.alpha.fal.ai": "",
}


def route(target: str, own_hosts: set[str]) -> tuple[str, str] | None:
    """The (path, query) on this server for a fal target URL, or None if it is not ours to serve."""
    url = urllib.parse.urlsplit(target)
    host = (url.hostname or "").lower()
    if host in _PREFIX:
        prefix = _PREFIX[host]
    elif host.endswith(".fal.media") or url.netloc.lower() in own_hosts:
        prefix = ""
    else:
        return None
    return prefix + (url.path or "/"), url.query


class ProxyMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].rstrip("/") != PROXY_PATH or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        target = headers.get("x-fal-target-url")
        own = {headers.get("host", "").lower()}
        routed = route(target, own) if target else None
        if routed is None:
            status = 400
            detail = ("missing the x-fal-target-url header" if not target
                      else f"x-fal-target-url must point at a fal host served here, not {target}")
            body = json.dumps({"detail": detail}).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"), (b"access-control-allow-origin", b"*")]})
            await send({"type": "http.response.body", "body": body})
            return
        path, query = routed
        scope = dict(scope, path=path, raw_path=path.encode(), query_string=query.encode())
        return await self.app(scope, receive, send)
