"""Serving with uvicorn (uvloop, httptools), and the ordered graceful shutdown.

On SIGTERM or SIGINT, in order:
1. readiness answers 503 (endpoints controllers take the pod out of rotation);
2. wait `drain_delay_seconds` while requests still arrive and are served;
3. stop accepting connections;
4. finish requests in flight, for at most `graceful_timeout_seconds`;
5. close the invalidation listener, Redis, the hashing pool and the database pool (the lifespan).
A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from auth_service.app import create_app, front_door
from auth_service.health import Health
from auth_service.observability.logs import demote_graceful_cut_off
from auth_service.prompt_server import PromptServer
from auth_service.settings import Settings
from auth_service.wire import CoalescingHttpToolsProtocol

log = logging.getLogger(__name__)

BACKLOG = 4096


class DrainingServer(PromptServer):
    """uvicorn.Server whose first exit signal drains before it stops accepting."""

    def __init__(
        self,
        config: uvicorn.Config,
        health: Health,
        drain_delay: float,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        demote_graceful_cut_off(logging.getLogger("uvicorn.error"))
        self.health = health
        self.drain_delay = drain_delay
        self.on_started = on_started
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await super().startup(sockets)
        if self.on_started is not None and self.started:
            self.on_started()

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.health.draining or self._loop is None:
            super().handle_exit(sig, frame)
            return
        # Runs in a signal handler: hand over to the loop rather than touch it from here.
        self._loop.call_soon_threadsafe(self.begin_drain)

    def begin_drain(self) -> None:
        self.health.start_draining()
        log.info("draining: readiness is 503; accepting stops in %.1fs", self.drain_delay)
        assert self._loop is not None
        self._loop.call_later(self.drain_delay, self._stop_accepting)

    def _stop_accepting(self) -> None:
        self.should_exit = True


def server_config(
    app: ASGIApp, settings: Settings, *, host: str | None = None, port: int | None = None, log_level: str | None = None
) -> uvicorn.Config:
    """uvicorn as the service runs it (the tests serve through the same): uvloop, coalesced writes."""
    return uvicorn.Config(
        app,
        host=settings.host if host is None else host,
        port=settings.port if port is None else port,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol.limited(
            max_head_bytes=settings.http_max_header_bytes,
            head_timeout=settings.http_header_timeout_seconds,
            send_timeout=settings.http_send_timeout_seconds,
        ),
        # No limit_concurrency: past it uvicorn answers every request on every connection 503 (in
        # plain text), so idle or slow connections would again take the service down; the
        # timeouts bound how long each may stay, and the ingress bounds how many (README).
        timeout_keep_alive=settings.http_keep_alive_timeout_seconds,  # type: ignore[arg-type]  # a float works
        lifespan="on",
        access_log=False,
        server_header=False,
        # Off: by default it takes X-Forwarded-For from any loopback peer as the client. The service
        # reads the header itself, from settings.trusted_proxies only (security/client_address.py).
        proxy_headers=False,
        backlog=BACKLOG,
        timeout_graceful_shutdown=int(settings.graceful_timeout_seconds),
        log_level=(log_level or settings.log_level).lower(),
        log_config=None,  # the service's own (JSON) logging, configured by the CLI
    )


def reuse_port_sockets(settings: Settings) -> list[socket.socket] | None:
    """The API's listening socket bound with SO_REUSEPORT when the settings ask for it, else None (uvicorn binds).

    Several processes then listen on one address and the kernel hashes each new connection to one of
    them, as nginx's `listen ... reuseport` and gunicorn's `reuse_port` do: replicas on one host with no
    balancer in front (bench/topology.py measures two against one). uvicorn has no such option of its own.
    """
    if not settings.reuse_port:
        return None
    family, kind, proto, _, address = socket.getaddrinfo(
        settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(address)
    listener.listen(BACKLOG)
    return [listener]


def build_server(
    settings: Settings, database_url: str | None = None, on_started: Callable[[], None] | None = None
) -> DrainingServer:
    app = create_app(settings, database_url)
    config = server_config(front_door(app), settings)
    return DrainingServer(config, app.state.health, settings.drain_delay_seconds, on_started)


def serve_with_granian(settings: Settings) -> None:
    """The same application behind granian (a Rust HTTP server), without the fast lane.

    Measured 2026-11-29, each pinned to one core with wrk on the other, each run with its own ceiling:
    granian served 18.0k verifications and 14.9k cached reads a second (0.30x and 0.26x the ceiling),
    uvicorn with the fast lane 18.3k and 15.3k (0.35x and 0.25x), uvicorn without it 7.6k and 8.0k.
    uvicorn stays the default: its drain is the service's own, and the lane needs its protocol.

    Granian owns the signals: on SIGTERM it stops accepting at once, finishes in-flight requests
    within `graceful_timeout_seconds`, then runs the lifespan's shutdown. The drain before that
    (readiness 503 while endpoints drop the pod) is the orchestrator's: a preStop sleep. The worker
    builds its settings from the environment (auth_service.asgi).
    """
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.server import Server

    Server(
        "auth_service.asgi:create",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        backlog=4096,
        log_access=False,
        log_level=settings.log_level.lower(),  # type: ignore[arg-type]
        workers_kill_timeout=max(1, int(settings.graceful_timeout_seconds)),
    ).serve()
