"""The playground: the web page where people try an endpoint, served from stillreel itself.

Everything the page needs lives in ``stillreel/web`` (plain HTML, CSS and ES modules, no build step,
no CDN). Routes:

* ``GET /`` and ``GET /models/{endpoint_id}``: the same HTML shell; ``app.js`` routes on the path.
* ``GET /static/{path}``: the assets. The shell links them under ``/static/<build>/`` where
  ``<build>`` is a hash of the folder's contents, so a browser may keep them forever
  (``immutable``); any other path is served with ``no-cache`` + ETag (revalidated, 304 when
  unchanged).

Include this router last: its GET routes are the most general ones the app has (the sync-run
route is ``POST /{endpoint_id:path}``, so they do not collide).
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from stillreel.endpoints import registry

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

router = APIRouter(include_in_schema=False)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"
# The shell and assets never load anything from elsewhere; media may come from S3 or elsewhere.
_CSP = (
    "default-src 'self'; img-src 'self' data: blob: http: https:; media-src 'self' blob: http: https:; "
    "connect-src 'self' http: https:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'self'"
)


@lru_cache(maxsize=1)
def _build() -> str:
    """A short hash of every asset: changes whenever any file in ``web/`` changes."""
    digest = hashlib.sha256()
    for path in sorted(WEB_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(WEB_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _asset(relative: str) -> Path | None:
    """The file under ``web/`` that ``relative`` names, or None (also for ``..`` escapes)."""
    candidate = (WEB_DIR / relative).resolve()
    if not candidate.is_relative_to(WEB_DIR) or not candidate.is_file():
        return None
    return candidate


def _shell(title: str, description: str) -> HTMLResponse:
    text = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    text = (
        text.replace("{{static}}", f"/static/{_build()}")
        .replace("{{title}}", html.escape(title))
        .replace("{{description}}", html.escape(description))
    )
    return HTMLResponse(
        text, headers={"Cache-Control": _REVALIDATE, "Content-Security-Policy": _CSP}
    )


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
def endpoint_list() -> HTMLResponse:
    return _shell("stillreel playground", "Try the Kling video endpoints this server runs: image-to-video, "
                  "text-to-video, reference-to-video and elements.")


@router.api_route("/models/{endpoint_id:path}", methods=["GET", "HEAD"], response_class=HTMLResponse)
def endpoint_page(endpoint_id: str) -> HTMLResponse:
    endpoint = registry.find(endpoint_id)
    if endpoint is None:
        raise HTTPException(status_code=404, detail=f"Unknown endpoint: {endpoint_id}")
    return _shell(f"{endpoint.title} · stillreel", endpoint.description)


@router.api_route("/static/{asset_path:path}", methods=["GET", "HEAD"])
def static_asset(asset_path: str, request: Request) -> Response:
    build, _, rest = asset_path.partition("/")
    versioned = build == _build() and rest
    path = _asset(rest if versioned else asset_path)
    if path is None:
        raise HTTPException(status_code=404, detail="Not found")
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    headers = {
        "ETag": etag,
        "Cache-Control": _IMMUTABLE if versioned else _REVALIDATE,
        "X-Content-Type-Options": "nosniff",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    media_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Response(body, media_type=media_type, headers=headers)


@router.get("/favicon.ico")
def favicon(request: Request) -> Response:
    return static_asset("favicon.svg", request)
