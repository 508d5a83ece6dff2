"""Imported hashes are taken only within the configured parameter range: a per-item 422 otherwise, nothing written."""

from __future__ import annotations

from typing import Any

import argon2
import httpx
import pytest

from auth_service.settings import OWASP_MIN_MEMORY_KIB
from tests.utils.app import RunningApp, assert_error, serve, unique_email
from tests.utils.postgres import stored_emails

SALT, DIGEST = "c29tZXNhbHRzb21lc2FsdA", "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"


def phc(memory: int, time_cost: int, parallelism: int, salt: str = SALT) -> str:
    """A well-formed argon2id PHC string with these parameters (not a hash of anything: never verified here)."""
    return f"$argon2id$v=19$m={memory},t={time_cost},p={parallelism}${salt}${DIGEST}"


def item(password_hash: str) -> dict[str, Any]:
    return {"email": unique_email("import"), "name": "Imported", "password_hash": password_hash}


async def post_batch(client: httpx.AsyncClient, items: list[dict[str, Any]]) -> httpx.Response:
    return await client.post("/v1/users:batch", json={"users": items})


@pytest.fixture(scope="module")
def within() -> str:
    """A real hash, made elsewhere with argon2-cffi's defaults (m=64 MiB, t=3, p=4): inside the default range."""
    return argon2.PasswordHasher().hash("an-imported-password")


async def test_hashes_outside_the_range_get_a_422_each_and_nothing_is_written(
    app: RunningApp, database_url: str, within: str
) -> None:
    settings = app.services.settings
    items = [
        item(within),
        item(phc(4_194_304, 1000, 1)),  # the probe's: 4 GiB, t=1000
        item(phc(settings.argon2_import_max_memory_kib + 1, 3, 1)),
        item(phc(OWASP_MIN_MEMORY_KIB, settings.argon2_import_max_time_cost + 1, 1)),
        item(phc(OWASP_MIN_MEMORY_KIB, 3, settings.argon2_import_max_parallelism + 1)),
        item(phc(settings.argon2_import_min_memory_kib - 1, 3, 1)),
        item(phc(OWASP_MIN_MEMORY_KIB, settings.argon2_import_min_time_cost - 1, 1)),
        item(phc(OWASP_MIN_MEMORY_KIB, 3, 1, salt="c2FsdA")),  # a 4-byte salt: it could never verify
    ]
    error = assert_error(await post_batch(app.client, items), 422, "validation_error")
    out_of_range = [(index, "password_hash", "hash_parameters_out_of_range") for index in range(1, len(items) - 1)]
    unusable = [(len(items) - 1, "password_hash", "invalid_password_hash")]
    assert [(d["index"], d["field"], d["code"]) for d in error["details"]] == out_of_range + unusable
    for detail in error["details"]:
        assert set(detail) == {"index", "field", "code", "message"} and detail["message"], detail
    assert "m=4194304" in error["details"][0]["message"] and "t=1000" in error["details"][0]["message"]
    assert await stored_emails(database_url, [i["email"] for i in items]) == set()


async def test_the_range_is_the_configured_one(settings_for: Any, database_url: str, within: str) -> None:
    narrow = settings_for(argon2_import_max_memory_kib=OWASP_MIN_MEMORY_KIB)
    async with serve(narrow) as app:
        error = assert_error(await post_batch(app.client, [item(within)]), 422, "validation_error")
        assert [(d["index"], d["code"]) for d in error["details"]] == [(0, "hash_parameters_out_of_range")]
        accepted = item(phc(OWASP_MIN_MEMORY_KIB, 2, 1))
        assert (await post_batch(app.client, [accepted])).status_code == 201
    assert await stored_emails(database_url, [accepted["email"]]) == {accepted["email"].lower()}


async def test_a_hash_within_the_range_is_imported_and_logs_in(app: RunningApp, within: str) -> None:
    imported = item(within)
    assert (await post_batch(app.client, [imported])).status_code == 201
    login = {"email": imported["email"], "password": "an-imported-password"}
    assert (await app.client.post("/v1/auth/token", json=login)).status_code == 200
