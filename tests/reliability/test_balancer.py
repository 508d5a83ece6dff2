"""The harness's balancer routes as kube-proxy does: new connections to ready backends only, a backend
taken out after its readiness fails `failure_threshold` times, none ready: the connection refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from reliability.balancer import Probe, balancing

PROBE = Probe(period=0.05, failure_threshold=2)


class Backend:
    """An HTTP server that names itself in every answer, and whose /readyz answers as told."""

    def __init__(self, name: str) -> None:
        self.name, self.ready, self.port = name, True, 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                ready = self.ready or not head.startswith(b"GET /readyz")
                status, body = (b"200 OK", self.name.encode()) if ready else (b"503 Service Unavailable", b"")
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def backend(name: str) -> AsyncIterator[Backend]:
    found = Backend(name)
    server = await asyncio.start_server(found.serve, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    try:
        yield found
    finally:
        server.close()


async def names(url: str, count: int) -> list[str]:
    """Who answered `count` requests, each on a new connection."""
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        return [(await client.get("/")).text for _ in range(count)]


async def test_new_connections_go_round_robin_to_ready_backends_only() -> None:
    async with backend("a") as a, backend("b") as b, balancing(PROBE) as balancer:
        for found in (a, b):
            balancer.add(found.name, found.port)
            await balancer.wait_ready(found.name, 5)
        assert sorted(await names(balancer.url, 4)) == ["a", "a", "b", "b"]
        a.ready = False
        assert await balancer.wait_out("a", 5) >= PROBE.period  # two failed probes, not one
        assert await names(balancer.url, 4) == ["b"] * 4
        b.ready = False
        await balancer.wait_out("b", 5)
        with pytest.raises(httpx.TransportError):
            await names(balancer.url, 1)
        assert balancer.refused == 1
        a.ready = True
        await balancer.wait_ready("a", 5)
        assert await names(balancer.url, 2) == ["a", "a"]


async def test_a_connection_stays_with_its_backend_after_that_backend_leaves_rotation() -> None:
    async with backend("a") as a, backend("b") as b, balancing(PROBE) as balancer:
        balancer.add("a", a.port)
        await balancer.wait_ready("a", 5)
        async with httpx.AsyncClient(base_url=balancer.url) as kept:
            assert (await kept.get("/")).text == "a"
            balancer.add("b", b.port)
            await balancer.wait_ready("b", 5)
            a.ready = False
            await balancer.wait_out("a", 5)
            assert (await kept.get("/")).text == "a", "the kept-alive connection is not moved"
        assert await names(balancer.url, 2) == ["b", "b"]
