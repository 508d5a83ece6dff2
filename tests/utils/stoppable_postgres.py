"""A PostgreSQL of a test's own, which the test (or a reliability scenario) stops and starts again."""

from __future__ import annotations

from pathlib import Path

from auth_service.db.embedded import asyncpg_url, start_embedded


class StoppablePostgres:
    """A PostgreSQL of this test's own (pgserver), which the test may stop and start again."""

    def __init__(self, data_dir: Path) -> None:
        self.handle = start_embedded(data_dir)
        self.url = asyncpg_url(self.handle)

    def stop(self) -> None:
        """Fast shutdown: sessions are ended, as on a failover or a restart of the server."""
        import pgserver  # imported already, quietly, by start_embedded

        # As root, pgserver runs postgres as its own system user; pg_ctl must run as that user too.
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.handle.pgdata, user=self.handle.system_user)

    def start(self) -> None:
        """Start it again with the options pgserver chose at first (the same socket directory)."""
        self.handle.ensure_postgres_running()

    def close(self) -> None:
        self.handle.cleanup()
