"""Waiting, with a bound, for something that happens in the background (a NOTIFY, a reconnect)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until condition() holds; the seconds it took. Fails the test after `timeout` seconds."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.005)
    return time.perf_counter() - start
