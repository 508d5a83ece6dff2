"""The load shapes: a step ramp to a target request rate, a soak at it, and a spike above it.

Each says what request rate to offer at each moment; the users it asks for are that rate over the
users' pacing (pacing.py), so the offered rate holds however slowly the service answers, as long as
each user's one request in flight answers within its pace (100 ms at 10 requests a second).
The master reads --target-rps, --duration, --ramp-steps, --spike-factor and --user-rps at every
tick, so a run started from the web UI's form uses the values given there.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Iterable

from locust import LoadTestShape

from loadtests import pacing

SHAPE_ENV = "LOADTEST_SHAPE"
DEFAULT_SHAPE = "ramp"
# Users are started or stopped within about this long of a change of rate.
SPAWN_SECONDS = 2.0


class RateShape(LoadTestShape):
    abstract = True

    def rate_at(self, elapsed: float, options: Namespace) -> float | None:
        """The request rate to offer `elapsed` seconds into the run; None once it is over."""
        raise NotImplementedError

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        environment = self.runner.environment
        rate = self.rate_at(self.get_run_time(), environment.parsed_options)
        if rate is None:
            return None
        clients = [(user_class.weight, _pace(user_class)) for user_class in environment.user_classes]
        users = pacing.users_for_rate(rate, environment.parsed_options.user_rps, clients)
        return users, max(1.0, users / SPAWN_SECONDS)


def _pace(user_class: type) -> float:
    """A class's pace (users.py); 1 for a class of another locustfile that has none."""
    client = getattr(user_class, "client_kind", None)
    return client.pace if isinstance(client, pacing.Client) else 1.0


class StepRamp(RateShape):
    """Up to --target-rps in --ramp-steps equal steps over the first half of --duration, held for the second."""

    def rate_at(self, elapsed: float, options: Namespace) -> float | None:
        if elapsed >= options.duration:
            return None
        steps = max(1, options.ramp_steps)
        step = min(steps, 1 + int(elapsed / (options.duration / 2 / steps)))
        return float(options.target_rps * step / steps)


class Soak(RateShape):
    """--target-rps for the whole of --duration."""

    def rate_at(self, elapsed: float, options: Namespace) -> float | None:
        return None if elapsed >= options.duration else float(options.target_rps)


class Spike(RateShape):
    """--target-rps, then --spike-factor times it for the middle fifth of --duration, then back to it.

    What it shows: how much is shed or slowed during the spike, and whether the latency comes back after.
    """

    def rate_at(self, elapsed: float, options: Namespace) -> float | None:
        if elapsed >= options.duration:
            return None
        in_spike = 0.4 * options.duration <= elapsed < 0.6 * options.duration
        return float(options.target_rps * (options.spike_factor if in_spike else 1.0))


SHAPES: dict[str, type[RateShape]] = {"ramp": StepRamp, "soak": Soak, "spike": Spike}


def offered(chosen: str) -> Iterable[type[RateShape]]:
    """The shape classes for the locustfile to expose, the chosen one first (Locust runs the first one
    it finds; --class-picker offers them all). "none": no shape, Locust's --users and --run-time instead."""
    if chosen == "none":
        return []
    if chosen not in SHAPES:
        raise ValueError(f"{SHAPE_ENV}={chosen!r}: one of {', '.join(SHAPES)} or none")
    return [SHAPES[chosen], *(shape for name, shape in SHAPES.items() if name != chosen)]
