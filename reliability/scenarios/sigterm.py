"""SIGTERM during a slow request: a PATCH waits on a row the scenario's own transaction has locked when
SIGTERM arrives. Readiness turns 503 while requests are still served, accepting stops after the drain,
the PATCH completes with 200 once the row is free, and the process exits 0 within its graceful timeout."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from reliability import postgres
from reliability.context import Context
from reliability.scenario import Findings, Scenario
from reliability.service import Service, running
from tests.utils.sql import sql_connection, wait_for_lock_waiters

LOCK_ROW = "SELECT 1 FROM users WHERE id = $1 FOR UPDATE"


@dataclass(frozen=True)
class Params:
    drain_delay_s: float
    graceful_timeout_s: float
    held_past_drain_s: float  # the row stays locked this long after accepting has stopped


async def run(context: Context, params: Params) -> Findings:
    held_s = params.drain_delay_s + params.held_past_drain_s
    settings = {
        "AUTH_DRAIN_DELAY_SECONDS": str(params.drain_delay_s),
        "AUTH_GRACEFUL_TIMEOUT_SECONDS": str(params.graceful_timeout_s),
        # The held statement must outlive the drain, not be cancelled by the statement timeout.
        "AUTH_DB_STATEMENT_TIMEOUT_MS": str(int((held_s + params.graceful_timeout_s) * 1000)),
    }
    async with (
        postgres.fresh_database(context.database_server) as database,
        running(context, "held", database, **settings) as service,
        context.witness.client(service.url, timeout=held_s + params.graceful_timeout_s + 10) as client,
    ):
        user_id, token = await new_user(context, client)
        new_name = f"Renamed {uuid.uuid4().hex[:8]}"
        async with sql_connection(database) as locker, locker.transaction():
            await locker.execute(LOCK_ROW, uuid.UUID(user_id))
            patch = asyncio.create_task(
                client.patch(
                    f"/v1/users/{user_id}", json={"name": new_name}, headers={"Authorization": f"Bearer {token}"}
                )
            )
            async with sql_connection(database) as watcher:
                await wait_for_lock_waiters(watcher, 1)
            observed = await drain(service, params, held_s)
            observed["held_request_done_before_release"] = patch.done()
        response = await patch
        code = await service.exited(params.graceful_timeout_s + 5)
        observed["exit_code"], observed["exited_s"] = code, round(time.monotonic() - observed.pop("signalled"), 2)
        stored = await postgres.fetch_value(database, "SELECT name FROM users WHERE id = $1", uuid.UUID(user_id))
    return findings(params, response, observed, stored == new_name)


async def new_user(context: Context, client: httpx.AsyncClient) -> tuple[str, str]:
    password = f"sigterm-{uuid.uuid4().hex}"
    context.witness.secret("password", password)
    email = f"held-{uuid.uuid4().hex[:12]}@example.com"
    created = await client.post("/v1/users", json={"email": email, "name": "Held", "password": password})
    created.raise_for_status()
    login = await client.post("/v1/auth/token", json={"email": email, "password": password})
    login.raise_for_status()
    token: str = login.json()["access_token"]
    context.witness.secret("token", token)
    return created.json()["id"], token


async def drain(service: Service, params: Params, held_s: float) -> dict[str, Any]:
    """SIGTERM, then what a new client sees: readiness 503 but served during the drain, refused after it."""
    signalled = service.terminate()
    # New connections each time: what a balancer's new connections would meet.
    async with httpx.AsyncClient(
        base_url=service.url, timeout=2.0, limits=httpx.Limits(max_keepalive_connections=0)
    ) as fresh:
        not_ready_s = None
        while time.monotonic() - signalled < params.drain_delay_s:
            if (await fresh.get("/readyz")).status_code == 503:
                not_ready_s = round(time.monotonic() - signalled, 2)
                break
            await asyncio.sleep(0.05)
        served = (
            (await fresh.get("/healthz")).status_code if time.monotonic() - signalled < params.drain_delay_s else None
        )
        await asyncio.sleep(max(0.0, held_s - (time.monotonic() - signalled)))
        try:
            await fresh.get("/healthz")
            refused_after_drain = False
        except httpx.ConnectError:
            refused_after_drain = True
    return {
        "signalled": signalled,
        "readiness_503_after_s": not_ready_s,
        "served_during_drain": served,
        "refused_after_drain": refused_after_drain,
    }


def findings(params: Params, response: httpx.Response, observed: dict[str, Any], stored: bool) -> Findings:
    bound = params.drain_delay_s + params.graceful_timeout_s
    found = Findings(
        sent=1, failed=int(response.status_code != 200), lost_writes=int(response.status_code == 200 and not stored)
    )
    found.figures = {"held_request_status": response.status_code, "exit_bound_s": bound, **observed}
    found.expect(observed["readiness_503_after_s"] is not None, "readiness did not turn 503 during the drain")
    found.expect(observed["served_during_drain"] == 200, "a new request during the drain was not served")
    found.expect(observed["refused_after_drain"], "new connections were still accepted after the drain")
    found.expect(not observed["held_request_done_before_release"], "the held request ended before its row was free")
    found.expect(observed["exit_code"] == 0, f"the process exited with {observed['exit_code']}, not 0")
    found.expect(observed["exited_s"] <= bound + 1, f"exited {observed['exited_s']} s after SIGTERM (bound {bound} s)")
    found.observed = (
        f"held PATCH answered {response.status_code} after the drain; readiness 503 after "
        f"{observed['readiness_503_after_s']} s; exit {observed['exit_code']} after {observed['exited_s']} s "
        f"(drain {params.drain_delay_s} s + graceful {params.graceful_timeout_s} s)"
    )
    return found


SCENARIO = Scenario(
    key="sigterm",
    tried=(
        "A PATCH held in PostgreSQL (its row locked by the scenario's transaction) when SIGTERM arrives; the row "
        "is freed after the drain has ended and accepting has stopped"
    ),
    run=run,
    quick=Params(drain_delay_s=1.5, graceful_timeout_s=5.0, held_past_drain_s=1.0),
    long=Params(drain_delay_s=5.0, graceful_timeout_s=20.0, held_past_drain_s=3.0),
)
