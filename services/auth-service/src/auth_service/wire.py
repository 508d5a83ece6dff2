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

It also keeps the limits a client must keep to before it has sent a whole request head, which
uvicorn's httptools protocol has none of (h11's has a size limit only): a head larger than
`max_head_bytes` is answered 431 and the connection closed as soon as a read takes it past the
limit, before httptools, which buffers a header whole, holds more of it; a head not whole within
`head_timeout` of its first bytes gets 408, and a new connection that sends nothing in that time
is closed; a connection whose client has taken none of its responses for `send_timeout` is
dropped, which frees the request waiting to write to it. One timer per connection, which looks
again only when a deadline may have passed, keeps these and the fast lane's keep-alive timeout;
on the hot path nothing is armed per request. The body's own limits (size, time) are admission
control's, which reads it before the request takes an in-flight slot.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from auth_service.api.lane import FAST_LANE, FastLane
from auth_service.errors import error_body
from auth_service.health import HEALTH_STATE, Health
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


# Where the parser is in the request it reads. Small ints: setting one per request allocates nothing.
IDLE, HEAD, BODY = 0, 1, 2
# A request line's bytes besides its method and target ("  HTTP/1.1\r\n"), and the head's last CRLF.
REQUEST_LINE_FRAME = 14


class _Refused(Exception):
    """Raised from a parser callback once the connection has been answered and closed: stops the parse."""


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a CoalescingTransport, asking the fast lane first, within limits."""

    # Class attributes, so that uvicorn can make one protocol per connection from the class (`limited`).
    max_head_bytes = 16 * 1024
    head_timeout = 10.0
    send_timeout = 10.0
    lane: FastLane | None = None
    health: Health | None = None
    answered_in_lane = False
    parsing = IDLE
    read_size = 0  # bytes in the read being parsed
    head_spanning = False  # the head being read began in an earlier read than this one
    head_bytes = 0  # an unfinished head's bytes, from the start of the read it began in
    head_since = 0.0
    head_held = False  # reading was paused at the watchdog's last look at the head
    write_paused_since = 0.0
    idle_since = 0.0  # the connection opened, or the lane last answered
    idle_limit = 0.0  # how long it may stay idle from then: the head timeout, then the keep-alive timeout
    watchdog: asyncio.TimerHandle | None = None

    @classmethod
    def limited(
        cls, *, max_head_bytes: int, head_timeout: float, send_timeout: float
    ) -> type[CoalescingHttpToolsProtocol]:
        """This protocol with these limits on request heads and on clients that do not read."""
        limits = {"max_head_bytes": max_head_bytes, "head_timeout": head_timeout, "send_timeout": send_timeout}
        return cast(type[CoalescingHttpToolsProtocol], type(cls.__name__, (cls,), limits))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(self.coalescing)  # type: ignore[arg-type]
        if not self.root_path:  # the lane matches paths as they arrive
            self.lane = self.app_state.get(FAST_LANE)
        self.health = self.app_state.get(HEALTH_STATE)
        # Until it has been answered, a connection has the head timeout to send its first request.
        self.idle_since = self.loop.time()
        self.idle_limit = self.head_timeout
        self.watchdog = self.loop.call_at(self.idle_since + self.head_timeout, self._watch)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, but bytes alone no longer stop its keep-alive timer: a trickle of CRLFs, or of an
        # answered request's unread body, held a connection open for ever. A request beginning stops
        # it (on_message_begin); and a head still unfinished after a read is measured and timed.
        self.read_size = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if not self.transport.is_closing():  # else a callback has refused the request, and answered
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self.parsing == HEAD:
            self._head_unfinished()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.answered_in_lane = False
        self.parsing = HEAD
        if self.timeout_keep_alive_task is not None:  # no longer idle
            self._unset_keepalive_if_required()

    def on_headers_complete(self) -> None:
        self.parsing = BODY
        if self.head_spanning or self.read_size > self.max_head_bytes:
            self._check_head_size()  # only a head longer than one read, or in a read longer than the limit
        lane, draining = self.lane, self.health is not None and self.health.draining
        if lane is not None and not draining and self._lane_may_answer():
            response, sampled = lane.respond(self.url, self.headers, self.server_state.default_headers)
            if response is not None:
                self._answered(response)
                return
            if sampled is not None:
                self.scope[EDGE_SAMPLED] = sampled  # type: ignore[literal-required]
        super().on_headers_complete()
        if draining and self.cycle is not None:
            # Once draining, every response says `Connection: close` and the connection closes after
            # it, so clients reconnect (through the balancer, to a ready replica) while this one still
            # answers. Kept alive until accepting stops, a connection was closed by uvicorn under a
            # request the client had just sent on it: a lost request (reliability, rolling restart).
            self.cycle.keep_alive = False

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
        self.idle_since = self.loop.time()
        # The keep-alive timeout, as uvicorn arms it after each response, but one timer for a run of
        # answers rather than one made and cancelled per answer (4 us a request here, 5% of one).
        if self.idle_limit != self.timeout_keep_alive:  # the first answer: no longer the head timeout
            self.idle_limit = self.timeout_keep_alive
            self._watch_by(self.idle_since + self.idle_limit)
        elif self.watchdog is None:
            self.watchdog = self.loop.call_later(self.timeout_keep_alive, self._watch)

    def on_body(self, body: bytes) -> None:
        if not self.answered_in_lane:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self.parsing = IDLE
        if not self.answered_in_lane:
            super().on_message_complete()

    def pause_writing(self) -> None:
        # The transport holds more than its high-water mark: the client takes nothing. A request
        # writing its response waits (holding its in-flight slot) until it does, so it must in time.
        super().pause_writing()
        self.write_paused_since = self.loop.time()
        self._watch_by(self.write_paused_since + self.send_timeout)

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        # Armed when a response completed while the next request's head was arriving (pipelined):
        # that head has the head timeout, which the watchdog keeps.
        if self.parsing != HEAD:
            super().timeout_keep_alive_handler()

    # --- Limits on request heads, and the one timer that keeps them and the lane's keep-alive timeout

    def _head_unfinished(self) -> None:
        """A read ended inside a head: count the head against the size limit, and time it."""
        if self.head_spanning:
            self.head_bytes += self.read_size
        else:
            # Counted from the start of the read it began in: exactly, for a head that begins a read
            # (as on a new connection, or one that waited for its answer); with the requests before
            # it, for one that follows them in the same read (pipelined), which may be refused early.
            self.head_spanning = True
            self.head_bytes = self.read_size
            self.head_since = self.loop.time()
            self.head_held = False
            self._watch_by(self.head_since + self.head_timeout)
        if self.head_bytes > self.max_head_bytes:
            self._refuse_too_large()  # before the parser (httptools has no limit) holds any more of it

    def _check_head_size(self) -> None:
        """The complete head's size, from what was parsed of it; beyond the limit, refuse it."""
        self.head_spanning = False
        if self.watchdog is not None and not self.flow.write_paused:
            self.watchdog.cancel()  # timing the head: it is whole (its answer arms the keep-alive timeout)
            self.watchdog = None
        size = len(self.parser.get_method()) + len(self.url) + REQUEST_LINE_FRAME
        size += sum(len(name) + len(value) + 4 for name, value in self.headers)  # "name: value\r\n"
        if size > self.max_head_bytes:
            self._refuse_too_large()
            raise _Refused

    def _watch_by(self, when: float) -> None:
        """Have the watchdog look at this connection at `when` at the latest."""
        watchdog = self.watchdog
        if watchdog is not None:
            if watchdog.when() <= when:
                return
            watchdog.cancel()
        self.watchdog = self.loop.call_at(when, self._watch)

    def _watch(self) -> None:
        """Close the connection if it has waited too long for the client, else look again when it may have."""
        self.watchdog = None
        now = self.loop.time()
        if self.flow.write_paused:  # closing or not: a close waits for the client to read what it holds
            deadline = self.write_paused_since + self.send_timeout
            if now >= deadline:
                self.transport.abort()  # dropped with what it was sent
                self._count_refusal("send_timeout")
                return
            self._watch_by(deadline)
        if self.transport.is_closing():
            return
        if self.parsing == HEAD:
            self._watch_head(now)
        elif self.parsing == IDLE and self._idle():
            deadline = self.idle_since + self.idle_limit
            if now < deadline:
                self._watch_by(deadline)
            else:
                self.transport.close()
        # Else a request is being answered, or its body read (admission control times that): once
        # it is answered, uvicorn arms its keep-alive timer, or the lane this one.

    def _idle(self) -> bool:
        """Nothing to answer, nor uvicorn's keep-alive timer running (it closes the connection itself)."""
        cycle = self.cycle
        return (cycle is None or cycle.response_complete) and not self.pipeline and self.timeout_keep_alive_task is None

    def _watch_head(self, now: float) -> None:
        # uvicorn stops reading while requests before this one wait for their answers (pipelined):
        # that time is not the client's. Paused at the last look, reading has resumed at some time
        # since: the head's time starts again, from now.
        if self.flow.read_paused or self.head_held:
            self.head_since = now
            self.head_held = self.flow.read_paused
        deadline = self.head_since + self.head_timeout
        if now < deadline:
            self._watch_by(deadline)
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False  # a 408 now would cut into the response under way: close after it
            return
        message = f"the request head did not arrive within {self.head_timeout:g} s"
        self._refuse(408, "request_timeout", message, reason="header_timeout")

    def _refuse_too_large(self) -> None:
        message = f"the request head is larger than {self.max_head_bytes} bytes"
        self._refuse(431, "headers_too_large", message, reason="headers_too_large")

    def _refuse(self, status: int, code: str, message: str, *, reason: str) -> None:
        """Answer in the error shape and close: nothing more is read from this connection."""
        body = error_body(code, message)
        lines = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            lines += (name, b": ", value, b"\r\n")
        lines.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.coalescing.write_through(b"".join(lines) + body)
        self.transport.close()
        self._count_refusal(reason)

    def _count_refusal(self, reason: str) -> None:
        services = self.app_state.get("services")  # the service's metrics, once its lifespan has run
        if services is not None:
            services.telemetry.metrics.rejected.labels(reason).inc()
