"""A failed login takes the same time for an unknown email and a wrong password, whatever the stored hash's cost.

Before the floor, a stored hash was verified at its own parameters and the unknown email's dummy at the
current ones: after a cost increase (or beside a costlier import) the two were apart by the difference.
Samples are interleaved in alternating order, so that the machine's load drifts over both alike, and
compared as distributions (Kolmogorov-Smirnov), never against absolute times.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import argon2
import httpx

from auth_service.settings import OWASP_MIN_MEMORY_KIB, OWASP_MIN_TIME_COST
from tests.security.clients import WRONG, log_in
from tests.security.timing import ks_critical, ks_statistic
from tests.utils.app import create_user, serve, unique_email

ROUNDS = 14
# 1 in 1000 that two samples of one distribution are called different: rare enough on a noisy machine,
# while the separated samples of the leak are at the statistic's maximum, 1.
ALPHA = 0.001


async def _failure_seconds(client: httpx.AsyncClient, email: str) -> float:
    started = time.perf_counter()
    response = await log_in(client, email, WRONG)
    elapsed = time.perf_counter() - started
    assert response.status_code == 401, response.text
    return elapsed


async def _compare(client: httpx.AsyncClient, known_email: str) -> tuple[float, float, float]:
    """(KS statistic, median of the known email's failures, of unknown emails'), interleaved."""
    known: list[float] = []
    unknown: list[float] = []
    for round_ in range(ROUNDS):
        pair = [(known, known_email), (unknown, unique_email("nobody"))]
        for samples, email in pair if round_ % 2 else reversed(pair):
            samples.append(await _failure_seconds(client, email))
    return ks_statistic(known, unknown), statistics.median(known), statistics.median(unknown)


async def test_after_a_time_cost_increase_unknown_and_known_emails_fail_alike(settings_for: Any) -> None:
    at_the_minimum = {"argon2_import_max_memory_kib": OWASP_MIN_MEMORY_KIB}
    async with serve(settings_for(argon2_time_cost=2, **at_the_minimum)) as before:
        user = await create_user(before.client)  # its hash keeps t=2: wrong passwords never rehash
    # Imports up to t=9 make the floor cover t=9: room above the dummy's t=6 for a loaded machine.
    raised = settings_for(argon2_time_cost=6, argon2_import_max_time_cost=9, **at_the_minimum)
    async with serve(raised) as app:
        statistic, known, unknown = await _compare(app.client, user["email"])
    assert statistic < ks_critical(ROUNDS, ROUNDS, ALPHA), (statistic, known, unknown)


async def test_beside_a_costlier_imported_hash_unknown_and_known_emails_fail_alike(settings_for: Any) -> None:
    costlier = argon2.PasswordHasher(time_cost=6, memory_cost=OWASP_MIN_MEMORY_KIB, parallelism=1)
    settings = settings_for(
        argon2_time_cost=OWASP_MIN_TIME_COST,
        argon2_import_max_memory_kib=OWASP_MIN_MEMORY_KIB,
        argon2_import_max_time_cost=9,  # the floor covers t=9: room above the import's t=6
    )
    async with serve(settings) as app:
        item = {"email": unique_email("imported"), "name": "Imported", "password_hash": costlier.hash("its-password")}
        imported = await app.client.post("/v1/users:batch", json={"users": [item]})
        assert imported.status_code == 201, imported.text
        statistic, known, unknown = await _compare(app.client, item["email"])
    assert statistic < ks_critical(ROUNDS, ROUNDS, ALPHA), (statistic, known, unknown)
