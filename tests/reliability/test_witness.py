"""The `secret` grep finds what it looks for: a secret planted in a log, a span or a body is reported."""

from __future__ import annotations

from reliability.witness import Witness, leaks

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$ZGlnZXN0ZGlnZXN0ZGlnZXN0ZGlnZXN0"


def witness() -> Witness:
    found = Witness()
    found.secret("password", "correct-horse-battery")
    found.secret("token", TOKEN)
    found.secret("hash", HASH)
    found.secret("password", "short")  # too short to look for: it would match by chance
    return found


def test_each_secret_is_found_where_it_was_planted() -> None:
    haystacks = {
        "a.log": b'{"message": "login correct-horse-battery"}',
        "spans": b"attributes={'auth': 'c2lnbmF0dXJlLW9mLXRoZS10b2tlbg'}",  # the signature alone
        "bodies": b'{"error": {"details": ["ZGlnZXN0ZGlnZXN0ZGlnZXN0ZGlnZXN0"]}}',  # the digest alone
        "clean.log": b"nothing here but short",
    }
    assert leaks(witness(), haystacks) == [("hash", "bodies"), ("password", "a.log"), ("token", "spans")]


def test_nothing_is_reported_where_nothing_was_planted() -> None:
    assert leaks(witness(), {"a.log": b"GET /v1/users/1 200", "spans": b""}) == []
    assert witness().count() == 3
