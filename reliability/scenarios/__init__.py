"""Every scenario, by its key in the report. A new one: a module with its SCENARIO, listed here.

The issue's keys without a scenario here (or not chosen) are reported "not run", never as passed.
"""

from __future__ import annotations

from typing import Any

from reliability.scenario import Scenario
from reliability.scenarios import (
    bad_input,
    brute,
    cancel,
    database,
    enumeration,
    overload,
    redis,
    rolling,
    schemathesis,
    secret,
    sigterm,
    slow,
    token,
)

# In the order a run takes them: `secret` last, since it greps what the others produced.
SCENARIOS: dict[str, Scenario[Any]] = {
    scenario.key: scenario
    for scenario in (
        rolling.SCENARIO,
        sigterm.SCENARIO,
        database.SCENARIO,
        cancel.SCENARIO,
        redis.SCENARIO,
        overload.SCENARIO,
        slow.SCENARIO,
        schemathesis.SCENARIO,
        bad_input.SCENARIO,
        brute.SCENARIO,
        token.SCENARIO,
        enumeration.SCENARIO,
        secret.SCENARIO,
    )
}
