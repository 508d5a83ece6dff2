"""The ceiling: what Python on one core can serve at all, the same bytes with no framework and no work.

A uvloop `asyncio.Protocol` speaking just enough HTTP/1.1: keep-alive, pipelined requests answered in
order, Content-Length bodies skipped (chunked bodies are not supported). Each request is answered with
full response bytes built once at start, chosen by method and path prefix from a JSON file:

    {"routes": [{"method": "GET", "prefix": "/v1/auth/verify", "status": 200,
                 "body": "{...}", "content_type": "application/json"}, ...]}

    python -m bench.ceiling --host 127.0.0.1 --port 8002 --responses bench/responses.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
from http import HTTPStatus
from pathlib import Path
from typing import cast

import uvloop

NOT_FOUND_BODY = b'{"error":{"code":"not_found","message":"not found","details":[]}}'
# Beyond these, the client is not one this server is for: it closes the connection.
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
# Searched only between a request's start and its blank line; a match object only when a body is announced.
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)

Routes = tuple[tuple[bytes, bytes], ...]


def response_bytes(status: int, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def load_routes(path: Path) -> Routes:
    """(b"METHOD /prefix", response bytes) pairs, longest prefix first so that the most specific wins."""
    routes = [
        (
            f"{route['method'].upper()} {route['prefix']}".encode(),
            response_bytes(route["status"], route["body"].encode(), route.get("content_type", "application/json")),
        )
        for route in json.loads(path.read_text())["routes"]
    ]
    return tuple(sorted(routes, key=lambda route: -len(route[0])))


class HttpProtocol(asyncio.Protocol):
    """One connection: cut requests out of the stream at their blank line (and body), answer each."""

    __slots__ = ("buffer", "not_found", "routes", "transport")

    def __init__(self, routes: Routes, not_found: bytes) -> None:
        self.routes = routes
        self.not_found = not_found
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, though they are one.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        answers: list[bytes] = []
        start = 0
        while (end := data.find(b"\r\n\r\n", start)) >= 0:
            request_end = end + 4
            announced = CONTENT_LENGTH.search(data, start, end)
            if announced is not None:
                request_end += int(announced[1])
                if request_end - end > MAX_BODY_BYTES:
                    return self._close()
                if request_end > len(data):
                    break  # the body is still coming
            answers.append(self._answer(data, start))
            start = request_end
        self.buffer = data[start:] if start < len(data) else b""
        if len(self.buffer) > MAX_HEAD_BYTES + MAX_BODY_BYTES:
            return self._close()
        if answers and self.transport is not None:
            self.transport.write(answers[0] if len(answers) == 1 else b"".join(answers))

    def _answer(self, data: bytes, start: int) -> bytes:
        for request_line_prefix, response in self.routes:
            if data.startswith(request_line_prefix, start):
                return response
        return self.not_found

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(host: str, port: int, routes: Routes) -> None:
    not_found = response_bytes(404, NOT_FOUND_BODY, "application/json")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(routes, not_found), host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description="the ceiling server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--responses", type=Path, required=True, help="JSON file of routes and their answers")
    args = parser.parse_args()
    routes = load_routes(args.responses)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, routes))


if __name__ == "__main__":
    main()
