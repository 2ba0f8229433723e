"""Request gatekeeping: a bearer token on every request, and folder confinement of every path.

The token check is an ASGI middleware, so it also covers /openapi.json, /docs and unknown routes.
Request sizes are limited by FastAPI's `max_body_size` (see app.py).
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from backend.service.settings import Settings


class PathRefused(Exception):
    """A request named a path outside the service's allowed folders (answered with 403)."""


def confine(path: str, settings: Settings) -> Path:
    """Resolve `path` (symlinks and `..` included) and return it if it lies inside an allowed folder.

    Request schemas already require absolute paths; a relative one would depend on the service's cwd.
    """
    try:
        resolved = Path(path).resolve()
    except (ValueError, OSError) as exc:  # lone surrogates cannot be encoded for the file system
        raise PathRefused(f"{path!r} is not a usable path on this system ({exc})") from None
    if not any(resolved.is_relative_to(root) for root in settings.allowed_folders):
        raise PathRefused(f"{path} is outside the folders this service may use")
    return resolved


class TokenMiddleware:
    """401 unless the request carries `Authorization: Bearer <token>` (compared in constant time)."""

    def __init__(self, app, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not hmac.compare_digest(self._authorization(scope), self.expected):
            body = json.dumps({"detail": "missing or wrong token: send 'Authorization: Bearer <token>'"}).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _authorization(scope) -> bytes:
        return next((value for name, value in scope["headers"] if name == b"authorization"), b"")
