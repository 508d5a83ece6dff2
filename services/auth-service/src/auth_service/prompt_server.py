"""uvicorn's Server, stopped the moment it is told to rather than at its next tick."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

# uvicorn's tick: on_tick counts them, ten to a second, for the Date header and the exit check.
TICK_SECONDS = 0.1


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
