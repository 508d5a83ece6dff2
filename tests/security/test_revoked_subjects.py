"""The revoked subjects as the token path sees them: what a revocation refuses, which one wins, and when it is
forgotten (past the horizon: the token lifetime and its leeway). tests/security/test_revocation.py has them
in a running service."""

from __future__ import annotations

import time
import uuid

import pytest

from auth_service.security.revocations import RevokedSubjects
from auth_service.security.tokens import InvalidToken, TokenService
from tests.utils.app import make_settings

SUBJECT = "8c0f2a5e-3b1d-4e6f-9a7b-2c4d6e8f0a1b"
HORIZON = 900.0 + 5.0  # the default token lifetime and leeway


def test_a_revocation_refuses_the_tokens_issued_up_to_it_and_no_later_ones() -> None:
    revoked = RevokedSubjects(HORIZON)
    revoked.revoke(SUBJECT, 1_000.5)
    assert revoked.refuses({"sub": SUBJECT, "iat": 1_000})
    assert revoked.refuses({"sub": SUBJECT, "iat": 900})
    assert not revoked.refuses({"sub": SUBJECT, "iat": 1_001})
    assert not revoked.refuses({"sub": str(uuid.uuid4()), "iat": 1_000})


def test_the_latest_revocation_wins_whatever_order_they_arrive_in() -> None:
    revoked = RevokedSubjects(HORIZON)
    revoked.notified(f"{SUBJECT} 2000.25")
    revoked.revoke(SUBJECT, 1_000.0)  # a reload that read the row before its update
    assert revoked.revoked_at(SUBJECT) == 2_000.25


def test_a_notify_it_cannot_read_changes_nothing() -> None:
    revoked = RevokedSubjects(HORIZON)
    revoked.notified(SUBJECT)
    revoked.notified(f"{SUBJECT} soon")
    assert len(revoked) == 0


def test_revocations_past_the_horizon_are_forgotten() -> None:
    revoked = RevokedSubjects(HORIZON)
    now = time.time()
    old, recent = str(uuid.uuid4()), str(uuid.uuid4())
    revoked.revoke(old, now - HORIZON - 1)
    revoked.revoke(recent, now - HORIZON + 60)
    assert revoked.expire(now) == 1
    assert revoked.revoked_at(old) is None and revoked.revoked_at(recent) is not None


def test_a_revocation_applies_to_a_verdict_already_cached(database_url: str) -> None:
    revoked = RevokedSubjects(HORIZON)
    tokens = TokenService(make_settings(database_url), revoked)
    token = tokens.issue(SUBJECT)
    _, claims = tokens.verify_encoded(token)
    assert tokens.verified.get(token, time.time()) is not None
    revoked.revoke(SUBJECT, claims["iat"])
    with pytest.raises(InvalidToken):
        tokens.verify_encoded(token)
    revoked.revoke(SUBJECT, claims["iat"] - 1)  # an earlier revocation changes nothing: the latest wins
    with pytest.raises(InvalidToken):
        tokens.verify_encoded(token)
