"""An ASGI factory for other servers, configured from the environment like `auth-service serve`.

    granian --interface asgi --factory auth_service.asgi:create
    uvicorn --factory auth_service.asgi:create

`auth-service serve` (uvicorn, with the drain-then-stop shutdown of server.py) is what ships; this
entry exists to measure servers against each other on the same application.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from auth_service import config_errors
from auth_service.app import create_app, front_door
from auth_service.cli import database_url
from auth_service.observability.logs import configure_logging
from auth_service.settings import load_settings


def create() -> ASGIApp:
    settings = config_errors.load(load_settings)
    configure_logging(settings)
    return front_door(create_app(settings, database_url(settings)))
