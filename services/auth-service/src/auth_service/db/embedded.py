"""An embedded PostgreSQL from a pip wheel (pgserver), for `make run` and tests with no database URL."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _pgserver() -> Any:
    # Imported on demand: only development without a database URL needs it. platformdirs warns at
    # import when XDG_RUNTIME_DIR is unset (containers, CI); pgserver then uses /tmp, which is fine.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:
        raise RuntimeError(
            "the embedded PostgreSQL needs the 'embedded' extra (pip install 'auth-service[embedded]'; "
            "`make venv` installs it); or set AUTH_DATABASE_URL"
        ) from exc
    return pgserver


def start_embedded(data_dir: Path) -> Any:
    """Start (or join) the server whose data lives under data_dir/pg; it stops when its last user exits."""
    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    return _pgserver().get_server(pgdata, cleanup_mode="stop")


def asyncpg_url(server: Any, database: str = "postgres") -> str:
    """The server's socket URL in the form SQLAlchemy's asyncpg dialect takes."""
    parts = urlsplit(server.get_uri())
    socket_dir = parse_qs(parts.query)["host"][0]
    return f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"
