"""A uvicorn server run in a task of the test's event loop, for the length of a block."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from tests.utils.waiting import wait_until


@asynccontextmanager
async def running(server: uvicorn.Server) -> AsyncIterator[tuple[asyncio.Task[None], int]]:
    """(the task serving, the port it listens on) once it has started; asked to exit afterwards."""
    task = asyncio.create_task(server.serve(), name="test-server")
    await wait_until(lambda: server.started or task.done(), 10, "the server starts")
    if not server.started:
        task.result()  # raises the reason it stopped, if it has one
        raise RuntimeError("the server stopped during start-up")
    try:
        yield task, server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
