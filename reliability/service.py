"""The service under test: `auth-service serve` as a process, started and stopped as the bench does it.

The bench's `running` (bench/servers.py) blocks while the process starts and stops; here it runs in a
thread, so that the load, the balancer and the trace receiver of the same event loop go on meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from auth_service.services import driver_dsn
from bench import servers
from bench.ports import free_ports
from bench.servers import Server
from reliability import postgres
from reliability.context import Context

# Every scenario but the limits' own comes from one client address standing for many clients: the
# per-client login, signup and hashing limits would measure themselves instead of the promise tried.
ONE_CLIENT_STANDS_FOR_MANY = {
    "AUTH_LOGIN_FAILURES_PER_ACCOUNT_CLIENT": "1000000",
    "AUTH_LOGIN_FAILURES_PER_ACCOUNT": "1000000",
    "AUTH_LOGIN_FAILURES_PER_CLIENT": "1000000",
    "AUTH_SIGNUPS_PER_CLIENT": "1000000",
    "AUTH_HASH_CLIENT_SHARE": "1",
}


@dataclass
class Service:
    server: Server
    admin_url: str
    env: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def terminate(self) -> float:
        """SIGTERM, as the kubelet sends it; when it was sent (monotonic)."""
        self.server.process.send_signal(signal.SIGTERM)
        return time.monotonic()

    async def exited(self, timeout: float) -> int | None:
        """The exit code once the process has exited, or None if it is still running after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.server.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.server.process.poll()

    def rss_mb(self) -> float | None:
        """The process's resident memory now (Linux), or None once it has exited."""
        try:
            for line in Path(f"/proc/{self.server.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return None

    def cpu_seconds(self) -> float | None:
        """The CPU time the process has used, user and system (Linux), or None once it has exited."""
        try:
            fields = Path(f"/proc/{self.server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def metrics(self) -> dict[str, float]:
        """The admin port's /metrics, as {name: value} for the unlabelled samples."""
        async with httpx.AsyncClient(timeout=5.0) as client:
            text = (await client.get(f"{self.admin_url}/metrics")).text
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.labels
        }

    async def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every sample of that name on the admin port's /metrics: (its labels, its value)."""
        async with httpx.AsyncClient(timeout=5.0) as client:
            text = (await client.get(f"{self.admin_url}/metrics")).text
        return [
            (found.labels, found.value)
            for family in text_string_to_metric_families(text)
            for found in family.samples
            if found.name == name
        ]

    async def by_label(self, name: str, label: str) -> dict[str, float]:
        """A labelled sample of the admin port's /metrics, as {that label's value: value}."""
        return {labels[label]: value for labels, value in await self.samples(name) if label in labels}

    async def quiesced(self, timeout: float) -> dict[str, float]:
        """The metrics once nothing is in flight: no request, no pooled connection checked out, no hash.

        After `timeout` seconds the metrics as they are (the caller reads what stayed busy).
        """
        deadline = time.monotonic() + timeout
        while True:
            found = await self.metrics()
            if not any(found.get(name) for name in BUSY) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.1)


# What is busy while a request is being served: all zero once the service is idle.
BUSY = (
    "http_server_requests_in_flight",
    "db_pool_connections_in_use",
    "db_read_pool_connections_in_use",
    "password_hash_in_progress",
)


def service_env(context: Context, database_url: str, settings: dict[str, str]) -> dict[str, str]:
    """Production settings on this database with the run's keys, as the bench runs the service, plus these."""
    env = servers.common_env(driver_dsn(database_url), context.keys, context.batch_token)
    env |= ONE_CLIENT_STANDS_FOR_MANY | {
        # The shipped default: the `secret` scenario greps what the service logs at it.
        "AUTH_LOG_LEVEL": "INFO",
        # Stop at once unless the scenario is about the drain.
        "AUTH_DRAIN_DELAY_SECONDS": "0",
        # Traces of every process go to the run's receiver, sampled as shipped, for the `secret` grep.
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": context.traces.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        # Each process would compile its imports anew (the variable is set in some shells): 6 s of CPU here.
        "PYTHONDONTWRITEBYTECODE": "",
    }
    return env | settings


# The shared service traces and logs every request, so that the `secret` grep sees everything it did.
SHARED_SETTINGS = {"AUTH_ACCESS_LOG_SAMPLE_RATIO": "1", "OTEL_TRACES_SAMPLER": "always_on"}


async def shared(context: Context) -> tuple[Service, str]:
    """(the run's shared service, its database): started on first use, stopped when the run ends.

    For the scenarios that need the service as shipped and nothing of their own: each process start
    costs seconds of CPU, and the suite's short versions must stay short.
    """
    if "service" not in context.shared:
        database = await context.resources.enter_async_context(postgres.fresh_database(context.database_server))
        service = await context.resources.enter_async_context(running(context, "shared", database, **SHARED_SETTINGS))
        context.shared |= {"service": service, "database": database}
    return context.shared["service"], context.shared["database"]


@asynccontextmanager
async def running(context: Context, name: str, database_url: str, **settings: str) -> AsyncIterator[Service]:
    """One `auth-service serve` on free ports with these AUTH_* (or OTEL_*) settings; stopped afterwards."""
    port, admin_port = free_ports(2)
    env = service_env(context, database_url, settings) | {"AUTH_PORT": str(port), "AUTH_ADMIN_PORT": str(admin_port)}
    process = servers.running(name, servers.service_command(), env, port, context.log(name))
    server = await asyncio.to_thread(process.__enter__)
    try:
        yield Service(server, f"http://127.0.0.1:{admin_port}", env)
    finally:
        await asyncio.to_thread(process.__exit__, None, None, None)
