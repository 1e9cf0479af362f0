"""The web IDE page: `index.html` for the page's own routes, and its bundled assets.

The bundle is built from `web/ui/` by esbuild into `web/static/` (`make ui`); file names carry
a content hash, so assets are cached for a year and a new build is a new URL. `manifest.json`
there names the entry script, its stylesheet and the chunks to preload. The page loads nothing
from another origin and runs no inline script (see `content_security_policy`).
"""

from __future__ import annotations

import html
import json
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from quart import Blueprint, Response, request
from quart_schema import hide

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
BUILD_HINT = "npm ci --prefix web/ui && npm run --prefix web/ui build"

blueprint = Blueprint("ui", __name__)

# esbuild's [name]-[hash] names: the hash is 8 characters of base32.
_HASHED = re.compile(r"-[A-Z0-9]{8}\.(js|css|woff2?|png|svg)$")
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Manifest:
    js: str
    css: str | None
    preload: tuple[str, ...]


_cache: dict[str, tuple[float, Manifest]] = {}


def load_manifest(static_dir: Path = STATIC_DIR) -> Manifest | None:
    """The build's manifest, re-read when the file changes (a rebuild while serving)."""
    path = static_dir / "manifest.json"
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    cached = _cache.get(str(path))
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        raw = json.loads(path.read_text())
        found = Manifest(
            js=str(raw["js"]),
            css=str(raw["css"]) if raw.get("css") else None,
            preload=tuple(str(p) for p in raw.get("preload", [])),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (static_dir / found.js).is_file():
        return None
    _cache[str(path)] = (mtime, found)
    return found


def content_security_policy() -> str:
    """No inline script, nothing from other origins; sockets only to this host.

    Styles allow 'unsafe-inline': CodeMirror and xterm.js set element styles and inject
    their own <style> rules at run time (themes, measured sizes, remote cursor colours).
    """
    scheme = "wss" if request.scheme in ("https", "wss") else "ws"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self'",
            f"connect-src 'self' {scheme}://{request.host}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = content_security_policy()
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    # The page names the current hashed assets: always ask for the newest page.
    response.headers["Cache-Control"] = "no-cache"
    return response


def render_index(manifest: Manifest) -> str:
    links = [
        f'<link rel="modulepreload" href="/static/{html.escape(p)}">' for p in manifest.preload
    ]
    if manifest.css:
        links.append(f'<link rel="stylesheet" href="/static/{html.escape(manifest.css)}">')
    head = "\n    ".join(links)
    return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="color-scheme" content="light dark">
    <title>Vaporform</title>
    {head}
    <script type="module" src="/static/{html.escape(manifest.js)}"></script>
  </head>
  <body>
    <div id="app" aria-live="polite"></div>
    <noscript>The Vaporform IDE needs JavaScript.</noscript>
  </body>
</html>
"""


MISSING = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Vaporform: the IDE is not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>The web IDE is not built</h1>
<p>The API is running, but the page's bundle (<code>web/static/manifest.json</code>) is missing.
Build it from the repository root:</p>
<pre>{html.escape(BUILD_HINT)}</pre>
<p>(<code>make dev</code> and <code>make ui</code> do this.) The API answers meanwhile;
its reference is <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""


@blueprint.get("/")
@blueprint.get("/login")
@blueprint.get("/register")
@blueprint.get("/projects/<project_id>")
@blueprint.get("/projects/<project_id>/files/<path:path>")
@hide
async def page(project_id: str | None = None, path: str | None = None) -> Response:
    """The single page; the script routes on the URL (deep links open that file)."""
    manifest = load_manifest(STATIC_DIR)
    if manifest is None:
        response = Response(MISSING, status=503, content_type="text/html; charset=utf-8")
    else:
        response = Response(render_index(manifest), content_type="text/html; charset=utf-8")
    return _page_headers(response)


_bodies: dict[Path, tuple[float, bytes]] = {}


def _read(path: Path) -> bytes:
    """An asset's bytes, kept in memory: the bundle is about a megabyte, and hashed files
    never change."""
    mtime = path.stat().st_mtime
    found = _bodies.get(path)
    if found is None or found[0] != mtime:
        found = (mtime, path.read_bytes())
        _bodies[path] = found
    return found[1]


@blueprint.get("/static/<path:filename>")
@hide
async def static(filename: str) -> Response:
    """A built asset; the precompressed `.gz` beside it when the browser takes gzip."""
    target = (STATIC_DIR / filename).resolve()
    if STATIC_DIR.resolve() not in target.parents or not target.is_file():
        return Response("not found", status=404, content_type="text/plain")
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "text/javascript"):
        kind += "; charset=utf-8"
    gz = target.with_name(target.name + ".gz")
    compressed = "gzip" in request.headers.get("Accept-Encoding", "") and gz.is_file()
    response = Response(_read(gz if compressed else target), content_type=kind)
    if compressed:
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept-Encoding"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = IMMUTABLE if _HASHED.search(target.name) else "no-cache"
    return response
