"""The scenario's settings, as Locust options: each from its command-line flag or its LOADTEST_* variable.

Locust sends them from the master to the workers with every start, and the web UI shows them in its
form ("Custom parameters"), where a run can change them. The mix (LOADTEST_MIX) and the shape
(LOADTEST_SHAPE) are read when the locustfile loads instead: they decide the classes Locust finds.
The budgets' defaults are in budgets.py, which says where they come from.
"""

from __future__ import annotations

from typing import Any

from loadtests.budgets import DEFAULT_BUDGETS
from loadtests.endpoints import DATABASE, HASHING, HOT

# (flag, variable, type, default, help)
SCENARIO = (
    ("--target-rps", "LOADTEST_RATE", float, 500.0, "Request rate the shape offers at its peak (req/s)"),
    ("--duration", "LOADTEST_DURATION", float, 30.0, "Seconds the shape runs; then the run stops"),
    ("--ramp-steps", "LOADTEST_RAMP_STEPS", int, 3, "Steps of the ramp shape up to --target-rps"),
    ("--spike-factor", "LOADTEST_SPIKE_FACTOR", float, 3.0, "The spike shape's peak, times --target-rps"),
    ("--user-rps", "LOADTEST_USER_RATE", float, 10.0, "Requests a second of each token-holding user"),
    ("--zipf-exponent", "LOADTEST_ZIPF_EXPONENT", float, 1.0, "Skew of the user reads over the seeded users"),
)
# Read once, when the run's accounts are seeded: not in the web UI's form, where a change would do nothing.
SEEDING = (
    ("--seed-users", "LOADTEST_SEED_USERS", int, 500, "Accounts made through POST /v1/users:batch at the start"),
    ("--seed-sessions", "LOADTEST_SEED_SESSIONS", int, 50, "Of them, logged in at the start for the users' tokens"),
    ("--ready-timeout", "LOADTEST_READY_TIMEOUT", float, 120.0, "Seconds the seeding waits for /readyz"),
)


def _gates() -> tuple[tuple[str, str, type, float, str], ...]:
    budgets = DEFAULT_BUDGETS
    gates: list[tuple[str, str, type, float, str]] = [
        ("--max-fail-ratio", "LOADTEST_MAX_FAIL_RATIO", float, budgets.max_fail_ratio, "Failed share of any request"),
        ("--max-shed-ratio", "LOADTEST_MAX_SHED_RATIO", float, budgets.max_shed_ratio, "Shed share of all requests"),
    ]
    for tier in (HOT, DATABASE, HASHING):
        latency = budgets.latency[tier]
        for label, value in (("p99", latency.p99_ms), ("p999", latency.p999_ms)):
            flag, variable = f"--{tier}-{label}-ms", f"LOADTEST_{tier.upper()}_{label.upper()}_MS"
            gates.append((flag, variable, float, value, f"Budget of the {tier} requests' {label} (ms)"))
    return tuple(gates)


GATES = _gates()


def add_arguments(parser: Any, **_: Any) -> None:
    """Locust's init_command_line_parser listener: the scenario's options on its parser."""
    for flag, variable, kind, default, help_text in (*SCENARIO, *GATES):
        parser.add_argument(flag, type=kind, default=default, env_var=variable, help=f"{help_text} [{variable}]")
    for flag, variable, kind, default, help_text in SEEDING:
        parser.add_argument(
            flag,
            type=kind,
            default=default,
            env_var=variable,
            include_in_web_ui=False,
            help=f"{help_text} [{variable}]",
        )
    parser.add_argument(
        "--batch-token",
        default=None,
        env_var="LOADTEST_BATCH_TOKEN",
        include_in_web_ui=False,
        help="Bearer token of POST /v1/users:batch: the service's AUTH_BATCH_TOKEN [LOADTEST_BATCH_TOKEN]",
    )
