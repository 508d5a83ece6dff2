"""uvicorn's Server, stopped the moment it is told to, and done the moment its connections are."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

# uvicorn's own logger: its stop lines and the graceful cut-off (observability/logs.py demotes that one).
log = logging.getLogger("uvicorn.error")

# uvicorn's tick: on_tick counts them, ten to a second, for the Date header and the exit check.
TICK_SECONDS = 0.1
# How often a stop looks whether its connections and tasks are done.
DONE_POLL_SECONDS = 0.005


class PromptServer(uvicorn.Server):
    """uvicorn looks at `should_exit` every tick, so every stop waited up to 0.1 s for it (a test
    serving the app once per case paid that some 600 times a run). Here setting it wakes the loop."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit_requested = asyncio.Event()  # before uvicorn's __init__ sets should_exit
        super().__init__(config)

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._exit_requested.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit_requested.set()
        else:
            self._exit_requested.clear()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), TICK_SECONDS)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's steps in its order, without its fixed pauses: it sleeps 0.1 s after asking the
        connections to close, then looks every 0.1 s whether they have. An idle keep-alive connection
        closes at once; so a stop took 0.1 s more than it needed, and 0.2 s with the admin server's
        inside it (measured: a served app's stop from 0.21 to 0.01 s)."""
        log.info("Shutting down")
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # closes an idle one; one answering closes after its response
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                await self._finished()
        except TimeoutError:
            log.error("Cancel %s running task(s), timeout graceful shutdown exceeded", len(self.server_state.tasks))
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _finished(self) -> None:
        """Until every connection has closed and every request task has ended (or a second signal forces it).

        Polled: uvicorn's sets of connections and tasks tell nobody when they empty."""
        while self.server_state.connections and not self.force_exit:  # noqa: ASYNC110
            await asyncio.sleep(DONE_POLL_SECONDS)
        while self.server_state.tasks and not self.force_exit:  # noqa: ASYNC110
            await asyncio.sleep(DONE_POLL_SECONDS)
