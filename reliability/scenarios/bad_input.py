"""Hand-made bad inputs against every endpoint that takes a body, and against HTTP itself: oversized,
invalid UTF-8, NUL, lone surrogates, deep nesting, huge numbers, duplicate keys, SQL injection in every
field. Each gets a 4xx or is handled correctly (an injected name stored as text, a login refused);
never a 5xx, and never a row it should not write (users counted before and after each)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reliability import raw
from reliability.context import Context
from reliability.scenario import Findings, Scenario
from reliability.scenarios.bad_input_cases import Case, Owner, cases
from reliability.service import shared
from tests.utils.sql import sql_connection

USERS = "SELECT count(*) FROM users"


@dataclass(frozen=True)
class Params:
    deep: int  # nesting depth of the deepest body


async def run(context: Context, params: Params) -> Findings:
    service, database = await shared(context)
    async with context.witness.client(service.url) as client, sql_connection(database) as sql:
        owner = await Owner.signed_up(context, client)
        snapshot = (await client.get(f"/v1/users/{owner.id}")).json()
        results = []
        for case in cases(owner, context.batch_token, params.deep, context.witness):
            before = await sql.fetchval(USERS)
            status, response = await raw.exchange(service.port, case.payload)
            if status is None or status >= 300:
                context.witness.body(response)
            rows = await sql.fetchval(USERS) - before
            owner_now = (await client.get(f"/v1/users/{owner.id}")).json()
            stored = await case.stored(sql) if case.stored is not None else None
            results.append(judge(case, status, response, rows, owner_now == snapshot or case.changes_owner, stored))
            if case.changes_owner:
                snapshot = owner_now
    return findings(results)


def judge(
    case: Case, status: int | None, response: bytes, rows: int, owner_intact: bool, stored: bool | None
) -> dict[str, Any]:
    """What the case got, and what was wrong with it (empty: it was handled)."""
    wrong = []
    if status is not None and status >= 500:
        wrong.append(f"answered {status}")
    if case.expect == "refused" and status is not None and not 400 <= status < 500:
        wrong.append(f"answered {status}, not a 4xx")
    if case.expect == "accepted" and (status is None or not 200 <= status < 300):
        wrong.append(f"answered {status}, not a 2xx")
    if case.expect == "protocol" and status is not None and not 400 <= status < 500:
        wrong.append(f"answered {status}: neither a 4xx nor a closed connection")
    if rows != (case.rows if status is not None and 200 <= status < 300 else 0):
        wrong.append(f"{rows} rows written")
    if not owner_intact:
        wrong.append("the targeted user changed")
    if stored is False:
        wrong.append("not stored as sent")
    return {"case": case.name, "status": status, "shaped": shaped(response), "wrong": wrong}


def shaped(response: bytes) -> bool:
    """The body is the service's error shape (or there is no error)."""
    _, _, body = response.partition(b"\r\n\r\n")
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and set(error) == {"code", "message", "details"}


def findings(results: list[dict[str, Any]]) -> Findings:
    broken = [result for result in results if result["wrong"]]
    unshaped = [r["case"] for r in results if r["status"] is not None and 400 <= r["status"] < 500 and not r["shaped"]]
    statuses: dict[str, int] = {}
    for result in results:
        statuses[str(result["status"])] = statuses.get(str(result["status"]), 0) + 1
    found = Findings(sent=len(results), failed=len(broken))
    found.figures = {
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(1 for r in results if r["status"] is not None and r["status"] >= 500),
        "broken": [f"{r['case']}: {'; '.join(r['wrong'])}" for r in broken],
        # 4xx not in the error shape: HTTP-level refusals answered by the server itself, not the application.
        "unshaped_4xx": unshaped,
    }
    found.observed = (
        f"{len(results)} bad inputs: {len(broken)} mishandled, {found.figures['server_errors']} 5xx; "
        f"statuses {found.figures['statuses']}"
    )
    return found


SCENARIO = Scenario(
    key="bad_input",
    tried=(
        "Every body endpoint with oversized, invalid UTF-8, NUL, lone-surrogate, deeply nested, huge-number, "
        "duplicate-key and SQL-injection bodies (every field), and malformed HTTP; users counted around each"
    ),
    run=run,
    quick=Params(deep=100_000),
    long=Params(deep=500_000),  # 1 MB of brackets: just within the body limit
)
