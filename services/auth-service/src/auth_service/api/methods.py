"""Every route of the application, and the methods a path allows: the `Allow` of a 405.

Starlette answers a method a route does not take with 405 and that route's methods in `Allow`. A
path here has a route per method (GET, PATCH and DELETE of a user), and the router picks the first
that matches the path: PUT on a user was told `Allow: GET`. The handler below lists the methods
of every route of that path, as RFC 9110 (15.5.6) asks.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auth_service.errors import ApiError, error_response


def all_routes(routes: list[Any]) -> list[Any]:
    """Every route with a path, inside included routers too (FastAPI nests them since 0.16x)."""
    found = []
    for route in routes:
        nested = getattr(getattr(route, "original_router", route), "routes", None)
        if isinstance(getattr(route, "path", None), str):
            found.append(route)
        elif nested is not None:
            found += all_routes(nested)
    return found


def allowed_methods(routes: list[Any], path: str) -> list[str]:
    """The methods of every route whose template matches this path, sorted."""
    methods: set[str] = set()
    for route in all_routes(routes):
        if route.path_regex.match(path) is not None:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    allowed = allowed_methods(request.app.routes, request.scope["path"])
    message = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
    return error_response(ApiError(405, "method_not_allowed", message, headers={"Allow": ", ".join(allowed)}))
