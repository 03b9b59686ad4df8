"""Small ASGI helpers shared by the api's and the gateway's middleware."""

from __future__ import annotations

from starlette.types import Scope


def full_path(scope: Scope) -> str:
    """The request path as the client sent it, also inside a mounted app (``root_path`` + path)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path if not root or path.startswith(root) else root + path
