"""The users a request rate takes, the task weights, the Zipf-like reads and Retry-After."""

from __future__ import annotations

import random

import pytest

from loadtests import pacing
from loadtests.endpoints import DEFAULT_RETRY_AFTER_SECONDS, MAX_RETRY_AFTER_SECONDS, retry_after
from loadtests.mix import DEFAULT_MIX, shares
from loadtests.zipf import ZipfPicker

CLIENTS = [(pacing.user_weight(client, DEFAULT_MIX), client.pace) for client in pacing.CLIENTS]


def test_each_client_sends_its_share_of_the_mix() -> None:
    """Users in proportion to the weights, each at its pace: the requests are in the mix's proportions."""
    weights = {client.name: pacing.user_weight(client, DEFAULT_MIX) for client in pacing.CLIENTS}
    sent = {client.name: weights[client.name] * client.pace for client in pacing.CLIENTS}
    total = sum(sent.values())
    mix_shares = shares(DEFAULT_MIX)
    for client in pacing.CLIENTS:
        assert sent[client.name] / total == pytest.approx(sum(mix_shares[kind] for kind in client.kinds))
    # Slow-paced rare clients keep a fair number of users, so a small run has some of each.
    assert min(weights.values()) / sum(weights.values()) > 0.15


@pytest.mark.parametrize("rate", [1.0, 300.0, 100_000.0])
def test_the_users_for_a_rate_offer_it_and_one_user_fewer_would_not(rate: float) -> None:
    users = pacing.users_for_rate(rate, 10.0, CLIENTS)
    mean_rate = 10.0 * sum(weight * pace for weight, pace in CLIENTS) / sum(weight for weight, _ in CLIENTS)
    assert users * mean_rate >= rate > (users - 1) * mean_rate
    assert pacing.users_for_rate(0, 10.0, CLIENTS) == 0
    assert pacing.users_for_rate(rate, 10.0, [(0.0, 1.0)]) == 0


def test_task_weights_keep_the_proportions_and_every_task_that_has_a_weight() -> None:
    weights = pacing.task_weights({"sign_up": 0.4, "log_in": 0.1, "never": 0.0})
    assert weights == {"sign_up": 800, "log_in": 200, "never": 0}
    assert pacing.task_weights({"common": 99.99, "rare": 0.001})["rare"] == 1


def test_zipf_reads_favour_the_first_users_as_much_as_the_exponent_says() -> None:
    items = list(range(100))
    uniform = ZipfPicker(items, 0.0, random.Random(1))
    counts = [0] * 100
    for _ in range(50_000):
        counts[uniform.pick()] += 1
    assert min(counts) > 300 and max(counts) < 700
    skewed = ZipfPicker(items, 1.0, random.Random(2))
    first = sum(skewed.pick() == 0 for _ in range(50_000)) / 50_000
    harmonic = sum(1 / rank for rank in range(1, 101))
    assert skewed.share_of_top(1) == pytest.approx(1 / harmonic)
    assert first == pytest.approx(1 / harmonic, abs=0.01)
    assert ZipfPicker(items, 2.0).share_of_top(10) > skewed.share_of_top(10) > uniform.share_of_top(10) == 0.1
    with pytest.raises(ValueError, match="no items"):
        ZipfPicker([], 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        ZipfPicker(items, -1.0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        (None, DEFAULT_RETRY_AFTER_SECONDS),
        ("Wed, 21 Oct 2026 07:28:00 GMT", DEFAULT_RETRY_AFTER_SECONDS),
        ("nan", DEFAULT_RETRY_AFTER_SECONDS),
        ("86400", MAX_RETRY_AFTER_SECONDS),
        ("-5", 0.0),
    ],
)
def test_retry_after_is_honoured_within_bounds(header: str | None, seconds: float) -> None:
    assert retry_after(header) == seconds
