"""Serve the baseline: `python -m bench.baseline --host 127.0.0.1 --port 8001` (configured by AUTH_* variables)."""

from __future__ import annotations

import argparse

import uvicorn

from auth_service.settings import load_settings
from bench.baseline.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--access-log", action="store_true", help="log every request (off, as in the service)")
    args = parser.parse_args()
    settings = load_settings()
    if not settings.database_url:
        parser.error("set AUTH_DATABASE_URL: the baseline uses an existing, migrated database")
    # uvicorn's defaults otherwise: one process, uvloop and httptools when they are installed.
    uvicorn.run(create_app(settings), host=args.host, port=args.port, access_log=args.access_log)


if __name__ == "__main__":
    main()
