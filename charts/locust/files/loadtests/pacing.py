"""How fast each kind of client sends, and so how many Locust users a request rate takes.

Every user is paced by constant throughput (Locust's `constant_throughput`): a user of a client
sends `pace * --user-rps` requests a second whatever the latency (up to one request in flight), so
the offered rate is users x rate and a slow server does not slow it. Rare clients send slowly: a
visitor signs up or logs in every few seconds, not ten times a second. That keeps the mix's 0.5% of
hashing requests spread over a fair number of users, so that even a small run has some of each.

Locust's weight of a client's class, w_c, is the client's share of the requests over its pace:
its users are w_c / W of all N users (W the sum of the weights), and all of them together send
N x user_rps / W requests a second.

Standard library only: the shapes use it on the master, the tests without locust.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from loadtests.mix import shares


@dataclass(frozen=True)
class Client:
    name: str  # the User class
    kinds: tuple[str, ...]  # the mix's kinds of request it sends
    pace: float  # its users' rate, as a share of --user-rps


CLIENTS = (
    Client("TokenVerifier", ("verify",), 1.0),
    Client("ProfileReader", ("user_hit", "not_found"), 1.0),
    Client("ProfileEditor", ("update",), 0.1),
    Client("Visitor", ("create", "login"), 0.02),
)
BY_NAME = {client.name: client for client in CLIENTS}
# Integer task weights (Locust repeats a task that many times in the list it draws from): a
# thousandth of the client's requests is the smallest share a task can have.
TASK_RESOLUTION = 1000


def share(client: Client, mix: Mapping[str, float]) -> float:
    """The client's share of all the requests."""
    return sum(shares(mix)[kind] for kind in client.kinds)


def user_weight(client: Client, mix: Mapping[str, float]) -> float:
    """Locust's weight of the client's User class: its share of the users."""
    return share(client, mix) / client.pace


def users_for_rate(rate: float, user_rps: float, clients: Iterable[tuple[float, float]]) -> int:
    """The users that offer `rate` requests a second, given each client's (Locust weight, pace); at least one.

    The users of a client are its weight's share of all users, and each sends pace x user_rps.
    """
    pairs = [(weight, pace) for weight, pace in clients if weight > 0]
    if rate <= 0 or not pairs:
        return 0
    mean_rate = user_rps * sum(weight * pace for weight, pace in pairs) / sum(weight for weight, _ in pairs)
    return max(1, math.ceil(rate / mean_rate))


def task_weights(weights: Mapping[str, float]) -> dict[str, int]:
    """Integer weights in the same proportions; a task with any weight keeps at least 1."""
    total = sum(weights.values())
    if total <= 0:
        return dict.fromkeys(weights, 0)
    return {
        name: max(1, round(weight / total * TASK_RESOLUTION)) if weight > 0 else 0 for name, weight in weights.items()
    }
