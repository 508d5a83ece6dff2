"""HTTP/1.1 on the wire: uvicorn's httptools protocol, asking the fast lane first, and sending each
response's head and body together.

The fast lane (api/lane.py) answers a hot GET as soon as its head is parsed, when nothing else on the
connection is still to be answered before it; the protocol then does for that answer what uvicorn
does when a response completes (counts it, keeps the connection's keep-alive timeout). Everything
else is uvicorn's: the lane's answers never create an ASGI cycle, so none can be left half-done.

uvicorn writes a response's status line and headers as soon as the application sends
`http.response.start`, and the body in a second write: two send() calls and two TCP segments for
every small response, and the client reads twice. On this service's hot paths (a few hundred bytes
each) py-spy put 20% of the samples in write() and 13% in read() (verify at saturation, in a profile
taken while another run shared the machine); coalesced, the loop thread's write() calls halve and
verify and cached reads cost 5-20% less CPU a request (bench A/B, 2026-11-29).
aiohttp coalesces the same way (aio-libs/aiohttp#10991); uvicorn does not.

The protocol hands uvicorn a transport that holds the first write of a burst and sends it with the
next one. A write that no other follows in the same step of the loop (a HEAD answer, a streamed
response's head before its first chunk, `100 Continue`) leaves on the loop's next turn, so nothing
waits on the application.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from auth_service.api.lane import FAST_LANE, FastLane
from auth_service.observability.tracing import EDGE_SAMPLED


class CoalescingTransport:
    """A transport that sends a held write together with the one after it."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._held = None
            self._transport.write(held + data)

    def write_through(self, data: bytes) -> None:
        """Send `data` now, after anything held."""
        held = self._held
        if held is not None:
            self._held = None
            data = held + data
        self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def flush(self) -> None:
        """Send what is held (the loop calls this after the step that wrote it)."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        # The rest (pause_reading, get_extra_info, set_protocol...) are the real transport's.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a CoalescingTransport, asking the fast lane first."""

    lane: FastLane | None = None
    answered_in_lane = False
    reading_head = False
    lane_idle_timer: asyncio.TimerHandle | None = None
    last_lane_answer = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(self.coalescing)  # type: ignore[arg-type]
        if not self.root_path:  # the lane matches paths as they arrive
            self.lane = self.app_state.get(FAST_LANE)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lane_idle_timer is not None:
            self.lane_idle_timer.cancel()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.answered_in_lane = False
        self.reading_head = True

    def on_headers_complete(self) -> None:
        self.reading_head = False
        lane = self.lane
        if lane is not None and self._lane_may_answer():
            response, sampled = lane.respond(self.url, self.headers, self.server_state.default_headers)
            if response is not None:
                self._answered(response)
                return
            if sampled is not None:
                self.scope[EDGE_SAMPLED] = sampled  # type: ignore[literal-required]
        super().on_headers_complete()

    def _lane_may_answer(self) -> bool:
        """A keep-alive GET/1.1 with nothing before it still to answer, to a client that reads."""
        cycle, parser = self.cycle, self.parser
        return (
            (cycle is None or cycle.response_complete)
            and not self.pipeline
            and not self.flow.write_paused
            and parser.get_method() == b"GET"
            and parser.get_http_version() == "1.1"
            and parser.should_keep_alive()
            and not parser.should_upgrade()
            and not self.transport.is_closing()
        )

    def _answered(self, response: bytes) -> None:
        """What uvicorn does when a response completes, for one the lane gave."""
        self.answered_in_lane = True
        self.coalescing.write_through(response)
        self.server_state.total_requests += 1
        self.last_lane_answer = self.loop.time()
        # The keep-alive timeout, as uvicorn arms it after each response, but one timer for a run of
        # answers rather than one made and cancelled per answer (4 us a request here, 5% of one).
        if self.lane_idle_timer is None:
            self.lane_idle_timer = self.loop.call_later(self.timeout_keep_alive, self._lane_idle)

    def _lane_idle(self) -> None:
        """Close the connection if nothing came since the lane's last answer, else look again later."""
        self.lane_idle_timer = None
        cycle = self.cycle
        if (
            self.timeout_keep_alive_task is not None  # uvicorn answered since: its own timer runs
            or self.reading_head
            or not (cycle is None or cycle.response_complete)
            or self.pipeline
        ):
            return  # a request is under way: uvicorn arms its timer once it is answered, the lane once it answers
        remaining = self.last_lane_answer + self.timeout_keep_alive - self.loop.time()
        if remaining > 0:
            self.lane_idle_timer = self.loop.call_later(remaining, self._lane_idle)
        else:
            self.timeout_keep_alive_handler()

    def on_body(self, body: bytes) -> None:
        if not self.answered_in_lane:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.answered_in_lane:
            super().on_message_complete()
