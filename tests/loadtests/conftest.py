"""The service the Locust runs of tests/loadtests share: one `auth-service serve` process on the test
database, in production mode (the batch endpoint takes its token), tracing to a real OTLP receiver.

Its signups are limited to 3 a client per 10 minutes, so that the Visitor's creates are shed with 429
and a long Retry-After, as a running service's would be.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from auth_service.services import driver_dsn
from bench import servers
from bench.ports import free_ports
from tests.utils.otlp_receiver import OtlpReceiver, ReceivedSpan

SIGNUPS_PER_CLIENT = 3
SIGNUP_WINDOW_SECONDS = 600


@dataclass(frozen=True)
class LoadService:
    url: str
    batch_token: str
    traces: OtlpReceiver

    def spans_when(self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float) -> list[ReceivedSpan]:
        """The spans received, once predicate(spans) holds; fails the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(spans := list(self.traces.spans)):
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {self.traces.describe()}")
            time.sleep(0.05)
        return spans


@contextmanager
def receiver_in_thread() -> Iterator[OtlpReceiver]:
    """An OTLP receiver serving from an event loop of its own thread, so that synchronous tests can use it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="otlp-receiver", daemon=True)
    thread.start()
    receiver = OtlpReceiver()
    try:
        asyncio.run_coroutine_threadsafe(receiver.start(), loop).result(10)
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="package")
def load_service(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadService]:
    batch_token = secrets.token_urlsafe(32)
    port, admin_port = free_ports(2)
    with receiver_in_thread() as traces:
        env = servers.common_env(driver_dsn(database_url), servers.signing_keys(), batch_token) | {
            "AUTH_PORT": str(port),
            "AUTH_ADMIN_PORT": str(admin_port),
            "AUTH_DRAIN_DELAY_SECONDS": "0",
            "AUTH_HASH_CLIENT_SHARE": "1.0",
            "AUTH_SIGNUPS_PER_CLIENT": str(SIGNUPS_PER_CLIENT),
            "AUTH_SIGNUP_WINDOW_SECONDS": str(SIGNUP_WINDOW_SECONDS),
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": traces.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
            "OTEL_BSP_SCHEDULE_DELAY": "500",
        }
        log = tmp_path_factory.mktemp("load-service") / "service.log"
        with servers.running("service", servers.service_command(), env, port, log) as server:
            yield LoadService(server.url, batch_token, traces)
