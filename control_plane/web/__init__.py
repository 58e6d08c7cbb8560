"""The operator dashboard: static files served from this package at `/` and `/static/...`."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Placeholder in index.html replaced by the versioned static prefix.
STATIC_PREFIX_MARK = "{{static}}"
_VERSION = re.compile(r"[0-9a-f]{12}")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Asset:
    """One file held in memory, with its validator and an optional gzip copy."""

    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


def _content_type(path: Path) -> str:
    if path.suffix == ".js":
        return "application/javascript; charset=utf-8"
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


def _asset(body: bytes, content_type: str) -> Asset:
    digest = hashlib.sha256(body).hexdigest()[:20]
    squeezed = gzip.compress(body, 9, mtime=0) if content_type.startswith(_COMPRESSIBLE) else None
    if squeezed is not None and len(squeezed) >= len(body):
        squeezed = None
    return Asset(body, squeezed, content_type, f'"{digest}"')


class Dashboard:
    """The dashboard's files, read once: they are small, and serving from memory needs no path checks."""

    def __init__(self, root: Path = STATIC_DIR):
        self.assets: dict[str, Asset] = {}
        everything = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            if name == "index.html":
                continue
            body = path.read_bytes()
            everything.update(name.encode() + b"\0" + body)
            self.assets[name] = _asset(body, _content_type(path))
        # One version for the whole set: module imports are relative, so they inherit it.
        self.version = everything.hexdigest()[:12]
        page = (root / "index.html").read_text().replace(STATIC_PREFIX_MARK, f"/static/{self.version}")
        self.index = _asset(page.encode(), "text/html; charset=utf-8")

    def respond(self, request: web.Request, asset: Asset, cache_control: str) -> web.Response:
        """The asset, or 304 when the client's copy is current; gzip when the client takes it."""
        headers = {"Cache-Control": cache_control, "ETag": asset.etag, "Vary": "Accept-Encoding"}
        if asset.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        body = asset.body
        if asset.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
            body = asset.gzipped
            headers["Content-Encoding"] = "gzip"
        headers["Content-Type"] = asset.content_type
        return web.Response(body=body, headers=headers)

    async def index_page(self, request: web.Request) -> web.Response:
        response = self.respond(request, self.index, REVALIDATE)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def static(self, request: web.Request) -> web.Response:
        """`/static/<version>/<file>` is cached for good; unversioned or old-version paths are revalidated."""
        path = request.match_info["path"]
        head, _, rest = path.partition("/")
        if head == self.version and rest:
            name, cache = rest, IMMUTABLE
        elif rest and _VERSION.fullmatch(head):
            # A page loaded before an upgrade: serve what is here now, but let it be revalidated.
            name, cache = rest, REVALIDATE
        else:
            name, cache = path, REVALIDATE
        asset = self.assets.get(name)
        if asset is None:
            raise web.HTTPNotFound()
        response = self.respond(request, asset, cache)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def setup(app: web.Application) -> None:
    """Serve the dashboard at `/` and its files at `/static/...`."""
    dashboard = Dashboard()
    app.router.add_get("/", dashboard.index_page)
    app.router.add_get("/static/{path:.+}", dashboard.static)
