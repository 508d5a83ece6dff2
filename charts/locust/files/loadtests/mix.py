"""The request mix, one definition for `make bench` (bench/config.py) and the Locust scenarios.

Standard library only: bench and the test suite import it, and importing locust would patch the
process with gevent.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

# The production mix. Creates cost an argon2 hash each, so writes are mostly PATCHes of a name.
DEFAULT_MIX = {"verify": 70.0, "user_hit": 20.0, "not_found": 7.0, "update": 2.5, "create": 0.4, "login": 0.1}
KINDS = tuple(DEFAULT_MIX)
# Each costs an argon2id hash (~17 ms of a core): the mix's biggest cost.
HASHING_KINDS = ("create", "login")
BENCH_MIX_ENV = "AUTH_BENCH_MIX"
LOADTEST_MIX_ENV = "LOADTEST_MIX"


def parse_mix(text: str, source: str = "mix") -> dict[str, float]:
    """The default mix with the weights "verify=70,user_hit=20,..." names replaced; ValueError says what is wrong."""
    mix = dict(DEFAULT_MIX)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = (part.strip() for part in item.partition("="))
        if name not in DEFAULT_MIX:
            raise ValueError(f"{source}: unknown request kind {name!r}; known: {', '.join(KINDS)}")
        mix[name] = _weight(weight, name, source)
    if sum(mix.values()) <= 0:
        raise ValueError(f"{source}: the weights add up to nothing")
    return mix


def _weight(text: str, name: str, source: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        raise ValueError(f"{source}: the weight of {name} is {text!r}, not a number") from None
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"{source}: the weight of {name} must be a finite number >= 0, not {text!r}")
    return weight


def mix_from_env(variable: str, environ: Mapping[str, str] | None = None) -> dict[str, float]:
    """The mix with the overrides of that environment variable (unset or empty: the default)."""
    return parse_mix((environ if environ is not None else os.environ).get(variable, ""), variable)


def shares(mix: Mapping[str, float]) -> dict[str, float]:
    """Each kind's share of the requests (the weights need not add up to 100)."""
    total = sum(mix.values())
    return {kind: weight / total for kind, weight in mix.items()}
