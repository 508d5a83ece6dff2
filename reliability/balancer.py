"""One address in front of several service processes, as a Service with its endpoints: kube-proxy's part.

Each new connection goes to the next ready backend (round robin) and stays with it, as kube-proxy's
rules route a connection once; a backend is ready when its /readyz answered 200 `success_threshold`
times in a row, and taken out after `failure_threshold` failures in a row, each probe `period`
apart, as the kubelet probes and the endpoints controller follows. No ready backend: the connection
is closed at once (counted), as a Service with no endpoints refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

CHUNK = 64 * 1024


@dataclass
class Backend:
    name: str
    port: int
    ready: bool = False
    streak: int = 0  # probes in a row with the same verdict, counted towards a change
    connections: int = 0
    changes: list[tuple[float, bool]] = field(default_factory=list)  # (monotonic, ready)


@dataclass
class Probe:
    period: float
    failure_threshold: int
    success_threshold: int = 1
    timeout: float = 1.0


class Balancer:
    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.backends: dict[str, Backend] = {}
        self.refused = 0  # connections that found no ready backend
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, name: str, port: int) -> Backend:
        """Probe a new backend; it gets connections once ready."""
        backend = self.backends[name] = Backend(name, port)
        self._probes[name] = asyncio.create_task(self._watch(backend), name=f"probe-{name}")
        return backend

    async def remove(self, name: str) -> None:
        """Stop probing a backend (its process is gone) and forget it."""
        self.backends.pop(name).ready = False
        task = self._probes.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def wait_ready(self, name: str, timeout: float) -> float:
        """Until the backend is in rotation; the seconds it took."""
        started = time.monotonic()
        while not self.backends[name].ready:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{name} was not ready within {timeout:.0f} s")
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    async def wait_out(self, name: str, timeout: float) -> float:
        """Until the backend is out of rotation; the seconds it took."""
        started = time.monotonic()
        while self.backends[name].ready:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{name} was still in rotation after {timeout:.0f} s")
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    async def close(self) -> None:
        for name in list(self.backends):
            await self.remove(name)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # Closing the sockets ends each connection's copies. Not cancel(): Python 3.11's streams log a cancelled one.
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    # --- probes

    async def _watch(self, backend: Backend) -> None:
        # A fresh connection per probe, as the kubelet's HTTP probes open.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=self.probe.timeout, limits=limits) as client:
            while True:
                self._judge(backend, await self._probe_once(client, backend))
                await asyncio.sleep(self.probe.period)

    @staticmethod
    async def _probe_once(client: httpx.AsyncClient, backend: Backend) -> bool:
        try:
            return (await client.get(f"http://127.0.0.1:{backend.port}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    def _judge(self, backend: Backend, passed: bool) -> None:
        if passed == backend.ready:
            backend.streak = 0
            return
        backend.streak += 1
        needed = self.probe.success_threshold if passed else self.probe.failure_threshold
        if backend.streak >= needed:
            backend.ready, backend.streak = passed, 0
            backend.changes.append((time.monotonic(), passed))

    # --- connections

    def _pick(self) -> Backend | None:
        ready = [backend for backend in self.backends.values() if backend.ready]
        return ready[next(self._turn) % len(ready)] if ready else None

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        self._writers.add(client_writer)
        try:
            await self._serve(client_reader, client_writer)
        finally:
            self._pipes.discard(task)
            self._writers.discard(client_writer)
            client_writer.close()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        backend = self._pick()
        if backend is None:
            self.refused += 1
            return
        try:
            backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", backend.port)
        except OSError:
            self.refused += 1
            return
        backend.connections += 1
        self._writers.add(backend_writer)
        try:
            await _splice(client_reader, client_writer, backend_reader, backend_writer)
        finally:
            self._writers.discard(backend_writer)
            backend_writer.close()


async def _splice(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    backend_reader: asyncio.StreamReader,
    backend_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until either side closes; then both close (an HTTP connection is done either way)."""
    upstream = asyncio.ensure_future(_copy(client_reader, backend_writer))
    downstream = asyncio.ensure_future(_copy(backend_reader, client_writer))
    try:
        await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (upstream, downstream):
            task.cancel()
        await asyncio.gather(upstream, downstream, return_exceptions=True)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()


@asynccontextmanager
async def balancing(probe: Probe) -> AsyncIterator[Balancer]:
    balancer = Balancer(probe)
    await balancer.start()
    try:
        yield balancer
    finally:
        await balancer.close()
