"""HTTP/1.1 by hand over a socket, for what an HTTP client will not do: abandon a request mid-flight,
send bytes that are not valid HTTP, or read whatever comes back, however malformed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from typing import Any

READ_TIMEOUT_SECONDS = 10.0


def request(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> bytes:
    """A complete request: JSON body (or raw bytes) with its Content-Length."""
    content = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(content)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + content


async def abandon(port: int, payload: bytes, linger_ms: float, reset: bool) -> None:
    """Send a whole request, wait `linger_ms`, and close without reading: with a RST if `reset`."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        if linger_ms:
            await asyncio.sleep(linger_ms / 1000)
        if reset:
            # SO_LINGER with a zero timeout: close() sends RST rather than FIN, as a killed client does.
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        if reset:
            writer.transport.abort()
        else:
            writer.close()


async def exchange(port: int, payload: bytes, timeout: float = READ_TIMEOUT_SECONDS) -> tuple[int | None, bytes]:
    """Send bytes and read until the server closes or answers one response: (status or None, what came)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(payload)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(timeout):
            received = await read_response(reader)
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    return status_of(received), received


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One response (by its Content-Length), or what came before the connection closed."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = await reader.read(65536)
        if not chunk:
            return received
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = content_length(head)
    while length is not None and len(body) < length:
        chunk = await reader.read(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value.strip())
    return None


def quote_path(text: str) -> str:
    """Text as one path segment (every reserved character escaped)."""
    return urllib.parse.quote(text, safe="")


def status_of(response: bytes) -> int | None:
    parts = response.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/"):
        with contextlib.suppress(ValueError):
            return int(parts[1])
    return None


@dataclass(frozen=True)
class Answer:
    status: int | None
    headers: dict[str, str]  # names lower-cased
    body: bytes


class KeepAlive:
    """Keep-alive connections to one port, one request at a time on each, taken in turn (the longest idle first).

    An HTTP client by hand for offered loads of tens of thousands a second, which httpx cannot send from
    one core: 21 us of CPU a request here against httpx's 2.7 ms (cached reads, 32 at a time), so that
    the client takes less of the machine it shares with the service. Taken in turn, every connection
    opened stays in use; one idle longer than `expiry` is closed rather than reused, well before the
    service's keep-alive timeout (5 s) closes it under a request.
    """

    def __init__(self, port: int, expiry: float = 2.0) -> None:
        self.port, self.expiry = port, expiry
        self.opened = 0
        self._idle: deque[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = deque()

    async def open(self, count: int, at_once: int = 100) -> None:
        """Open `count` connections now (`at_once` at a time), idle until requests take them."""
        for start in range(0, count, at_once):
            opened = await asyncio.gather(*(self._connect() for _ in range(min(at_once, count - start))))
            self._idle.extend((time.monotonic(), reader, writer) for reader, writer in opened)

    async def send(self, payload: bytes, timeout: float = READ_TIMEOUT_SECONDS) -> Answer:
        """One whole request and its whole answer; OSError, TimeoutError or IncompleteReadError when none came."""
        reader, writer = await self._take()
        try:
            async with asyncio.timeout(timeout):
                writer.write(payload)
                head = await reader.readuntil(b"\r\n\r\n")
                headers = header_fields(head)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self._idle.append((time.monotonic(), reader, writer))
        return Answer(status_of(head), headers, body)

    def close(self) -> None:
        for _, _, writer in self._idle:
            writer.close()
        self._idle.clear()

    async def _take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self._idle:
            since, reader, writer = self._idle.popleft()
            if time.monotonic() - since < self.expiry and not reader.at_eof():
                return reader, writer
            writer.close()
        return await self._connect()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        opened = await asyncio.open_connection("127.0.0.1", self.port)
        self.opened += 1
        return opened


def header_fields(head: bytes) -> dict[str, str]:
    """A response head's fields by lower-cased name (the last of a repeated one)."""
    fields = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if value:
            fields[name.strip().lower()] = value.strip()
    return fields
