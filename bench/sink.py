"""A trace collector that keeps nothing: 200 to every POST /v1/traces, and GET /stats says how much came.

python -m bench.sink --port 4318
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the OTLP exporter expects
    exports = 0
    received_bytes = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.partition("?")[0] != "/v1/traces":
            self._answer(404, b"", "text/plain")
            return
        Sink.exports += 1
        Sink.received_bytes += len(body)
        self._answer(200, b"", "application/x-protobuf")

    def do_GET(self) -> None:
        stats = json.dumps({"exports": Sink.exports, "bytes": Sink.received_bytes}).encode()
        self._answer(200, stats, "application/json")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per export would be all the output there is


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ThreadingHTTPServer((args.host, args.port), Sink).serve_forever()


if __name__ == "__main__":
    main()
