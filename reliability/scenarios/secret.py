"""Secrets never appear in logs, traces or error bodies: every password, token, hash and key the run's
scenarios sent (the witness's list) is looked for in everything the run produced: every process's log,
every span exported to the run's receiver, every error body answered, and the admin port's pages.

Run last, it greps what all the scenarios before it produced; its own probes first make sure there is
something to find: a signup, right and wrong logins, a password change, an import of a hash, bad
tokens and bad bodies carrying a password, all on the shared service that logs and traces every request.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import httpx

from reliability.context import Context
from reliability.scenario import Findings, Scenario
from reliability.service import Service, shared
from reliability.witness import leaks
from reliability.workload import seed_users

ADMIN_PAGES = ("/metrics", "/debug/slow", "/debug/tasks", "/debug/gc")
# The exporter sends every OTEL_BSP_SCHEDULE_DELAY (service.py): a few of those and the spans are in.
EXPORT_WAIT_SECONDS = 3.0


@dataclass(frozen=True)
class Params:
    rounds: int  # the probes, this many times


async def probes(context: Context, client: httpx.AsyncClient) -> int:
    """Requests that carry secrets, right and wrong; how many were sent."""
    email, password, new_password = (
        f"secret-{uuid.uuid4().hex[:12]}@example.com",
        f"pw-{uuid.uuid4().hex}",
        f"pw2-{uuid.uuid4().hex}",
    )
    for value in (password, new_password):
        context.witness.secret("password", value)
    sent = [await client.post("/v1/users", json={"email": email, "name": "Secret", "password": password})]
    login = await client.post("/v1/auth/token", json={"email": email, "password": password})
    token = login.json()["access_token"]
    context.witness.secret("token", token)
    bearer = {"Authorization": f"Bearer {token}"}
    user_id = sent[0].json()["id"]
    sent += [
        login,
        await client.post("/v1/auth/token", json={"email": email, "password": new_password}),
        await client.get("/v1/me", headers=bearer),
        await client.get("/v1/auth/verify", headers={"Authorization": f"Bearer {token}x"}),
        await client.get("/v1/me", headers={"Authorization": f"Bearer {token[:-3]}"}),
        # A password in bodies the service refuses: malformed, too long, of the wrong shape.
        await client.post(
            "/v1/users",
            content=f'{{"email": "{email}", "password": "{password}"',
            headers={"Content-Type": "application/json"},
        ),
        await client.post("/v1/users", json={"email": email, "name": "Secret", "password": password * 40}),
        await client.post("/v1/auth/token", json={"email": email, "password": password, "extra": password}),
        await client.post("/v1/users", json={"email": email, "name": "Secret", "password": password}),  # taken
        await client.patch(
            f"/v1/users/{user_id}", json={"password": new_password, "current_password": password}, headers=bearer
        ),
        await client.patch(
            f"/v1/users/{user_id}", json={"password": password, "current_password": f"{password}-wrong"}, headers=bearer
        ),
        await client.post("/v1/auth/token", json={"email": email, "password": new_password}),
    ]
    await seed_users(context, str(client.base_url), 2, f"imported-{uuid.uuid4().hex}")
    return len(sent) + 1


async def admin_pages(service: Service) -> dict[str, bytes]:
    async with httpx.AsyncClient(base_url=service.admin_url, timeout=10.0) as admin:
        return {f"admin {page}": (await admin.get(page)).content for page in ADMIN_PAGES}


async def run(context: Context, params: Params) -> Findings:
    service, _ = await shared(context)
    spans_before = len(context.traces.spans)
    async with context.witness.client(service.url) as client:
        sent = sum([await probes(context, client) for _ in range(params.rounds)])
    pages = await admin_pages(service)
    deadline = time.monotonic() + EXPORT_WAIT_SECONDS
    while len(context.traces.spans) == spans_before and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # the rest of the batch
    haystacks = {path.name: path.read_bytes() for path in sorted(context.log_dir.glob("*.log"))}
    haystacks |= pages
    haystacks["exported spans"] = "\n".join(repr(span) for span in context.traces.spans).encode()
    haystacks["error bodies"] = b"\n".join(context.witness.bodies)
    found = leaks(context.witness, haystacks)
    return findings(context, sent, found, haystacks, len(context.traces.spans) - spans_before)


def findings(
    context: Context, sent: int, found: list[tuple[str, str]], haystacks: dict[str, bytes], new_spans: int
) -> Findings:
    result = Findings(sent=sent, failed=len(found))
    result.figures = {
        "secrets_looked_for": context.witness.count(),
        "secrets_by_kind": {kind: len(values) for kind, values in context.witness.secrets.items()},
        "logs": sum(1 for name in haystacks if name.endswith(".log")),
        "log_bytes": sum(len(content) for name, content in haystacks.items() if name.endswith(".log")),
        "spans": len(context.traces.spans),
        "spans_of_the_probes": new_spans,
        "error_bodies": len(context.witness.bodies),
        "leaks": [f"a {kind} in {where}" for kind, where in found],
    }
    result.expect(new_spans > 0, "no span of the probes reached the receiver: the traces were not looked at")
    result.observed = (
        f"{context.witness.count()} secrets looked for in {result.figures['logs']} logs "
        f"({result.figures['log_bytes'] / 1e6:.1f} MB), {len(context.traces.spans):,} spans, "
        f"{len(context.witness.bodies):,} error bodies and the admin pages: {len(found)} found"
    )
    return result


SCENARIO = Scenario(
    key="secret",
    tried=(
        "Every password, token, hash and key the run's scenarios sent, looked for in every log, exported span, "
        "error body and admin page the run produced (after probes that carry secrets through right and wrong paths)"
    ),
    run=run,
    quick=Params(rounds=1),
    long=Params(rounds=3),
)
