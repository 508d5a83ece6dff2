"""A fresh, migrated database per run on AUTH_BENCH_DATABASE_URL, else AUTH_TEST_DATABASE_URL, else embedded."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from auth_service.db import migrate
from auth_service.db.embedded import asyncpg_url, start_embedded
from auth_service.services import driver_dsn
from auth_service.settings import Settings
from bench.config import REPO_ROOT

SERVER_ENVS = ("AUTH_BENCH_DATABASE_URL", "AUTH_TEST_DATABASE_URL")


@contextmanager
def database_server(cpu: int) -> Iterator[tuple[str, str]]:
    """(URL of a maintenance database, where it is): the configured server, or an embedded one kept running.

    The embedded one is pinned to `cpu` (the load generator's): it stands in for a database on another
    machine, and its backends would otherwise preempt the server under test on its own core.
    """
    for name in SERVER_ENVS:
        if os.environ.get(name):
            url = Settings(database_url=os.environ[name]).database_url
            assert url is not None
            yield url, f"the server named by {name} (not pinned: it is not the harness's)"
            return
    data_dir = REPO_ROOT / ".data" / "bench"
    embedded: Any = start_embedded(data_dir)
    pinned = pin_postgres(data_dir / "pg", cpu)
    where = f"an embedded PostgreSQL (pgserver) under {data_dir.relative_to(REPO_ROOT)}"
    where += f", its {pinned} processes pinned to CPU {cpu}"
    yield asyncpg_url(embedded), where
    del embedded  # it stops when the last process using it is gone


def pin_postgres(pgdata: Path, cpu: int) -> int:
    """Pin the postmaster and its processes to one CPU; backends it forks later inherit it. How many were pinned."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    processes = [postmaster, *children(postmaster)]
    for pid in processes:
        os.sched_setaffinity(pid, {cpu})
    return len(processes)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


async def _fetch_value(url: str, query: str) -> Any:
    conn = await asyncpg.connect(driver_dsn(url))
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def fresh_database(server: str) -> AbstractContextManager[str]:
    """A new database migrated to head, dropped afterwards; its SQLAlchemy (asyncpg) URL."""
    return migrate.temporary_database(server, "auth_bench")


def server_version(url: str) -> str:
    return str(asyncio.run(_fetch_value(url, "SHOW server_version")))
