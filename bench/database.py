"""A fresh, migrated database per run on AUTH_BENCH_DATABASE_URL, else AUTH_TEST_DATABASE_URL, else embedded;
the pid of its postmaster, for its CPU."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from auth_service.db import migrate
from auth_service.db.embedded import asyncpg_url, start_embedded
from auth_service.services import driver_dsn
from auth_service.settings import Settings
from bench.config import REPO_ROOT
from bench.measure import postgres_parent
from bench.servers import child_pids

SERVER_ENVS = ("AUTH_BENCH_DATABASE_URL", "AUTH_TEST_DATABASE_URL")


@dataclass(frozen=True)
class DatabaseServer:
    url: str  # a maintenance database's
    where: str  # for the report
    postmaster: int | None  # its pid on this machine, whose process tree's CPU is read; None: not here


@contextmanager
def database_server(cpu: int) -> Iterator[DatabaseServer]:
    """The configured server, or an embedded one kept running.

    The embedded one is pinned to `cpu` (the load generator's): it stands in for a database on another
    machine, and its backends would otherwise preempt the server under test on its own core.
    """
    for name in SERVER_ENVS:
        if os.environ.get(name):
            url = Settings(database_url=os.environ[name]).database_url
            assert url is not None
            postmaster = asyncio.run(_postmaster(url))
            cpu_read = "its CPU counts its other clients' work too" if postmaster else "its CPU not read: not here"
            where = f"the server named by {name} (not pinned: not the harness's; {cpu_read})"
            yield DatabaseServer(url, where, postmaster)
            return
    data_dir = REPO_ROOT / ".data" / "bench"
    embedded: Any = start_embedded(data_dir)
    postmaster = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    pinned = pin_postgres(postmaster, cpu)
    where = f"an embedded PostgreSQL (pgserver) under {data_dir.relative_to(REPO_ROOT)}"
    where += f", its {pinned} processes pinned to CPU {cpu}"
    yield DatabaseServer(asyncpg_url(embedded), where, postmaster)
    del embedded  # it stops when the last process using it is gone


def pin_postgres(postmaster: int, cpu: int) -> int:
    """Pin the postmaster and its processes to one CPU; backends it forks later inherit it. How many were pinned."""
    processes = [postmaster, *child_pids(postmaster)]
    for pid in processes:
        os.sched_setaffinity(pid, {cpu})
    return len(processes)


async def _postmaster(url: str) -> int | None:
    """The server's postmaster when it runs on this machine: the parent of the backend that answers."""
    conn = await asyncpg.connect(driver_dsn(url))
    try:
        # Read while connected: the backend exits with its connection.
        return postgres_parent(int(await conn.fetchval("SELECT pg_backend_pid()")))
    finally:
        await conn.close()


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
