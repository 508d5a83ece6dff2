"""A fair share of the hashing queue per client: one client's flood of logins leaves room for the others."""

from __future__ import annotations

import asyncio
from typing import Any

from auth_service.settings import OWASP_MIN_TIME_COST
from tests.security.clients import OTHER_PEER, WRONG, client_from, log_in
from tests.utils.app import RunningApp, create_user, serve, unique_email
from tests.utils.waiting import wait_until

FLOODERS = 24
GUESSES_EACH = 150  # the bound on the flood, should `stop` never come


async def _flood(app: RunningApp, stop: asyncio.Event) -> list[int]:
    """Wrong guesses on unknown emails (no limit stops them: each is a new account), until told to stop."""
    seen = []
    for _ in range(GUESSES_EACH):
        if stop.is_set():
            break
        seen.append((await log_in(app.client, unique_email("flood"), WRONG)).status_code)
        if seen[-1] == 503:
            await asyncio.sleep(0.01)  # an impatient client, ignoring Retry-After; not a spin
    return seen


async def test_a_flood_from_one_client_leaves_room_for_a_login_from_another(settings_for: Any) -> None:
    # Capacity 8: one client may hold 2 of it. Before the share, the flood held all 8 and the
    # legitimate login got 503.
    settings = settings_for(
        hash_workers=1, hash_queue_max=7, hash_client_share=0.25, argon2_import_max_time_cost=OWASP_MIN_TIME_COST
    )
    async with serve(settings) as app, client_from(app, OTHER_PEER) as real_user:
        user = await create_user(real_user)
        stop = asyncio.Event()
        flood = [asyncio.create_task(_flood(app, stop)) for _ in range(FLOODERS)]
        try:
            await wait_until(lambda: app.services.hasher.admitted >= 2, 10, "the flood fills its share")
            logins = [await log_in(real_user, user["email"], user["password"]) for _ in range(3)]
        finally:
            stop.set()
            seen = [status for statuses in await asyncio.gather(*flood) for status in statuses]
    assert [response.status_code for response in logins] == [200] * 3, [r.text for r in logins]
    assert set(seen) == {401, 503}, set(seen)  # the flood was served its share and refused beyond it
