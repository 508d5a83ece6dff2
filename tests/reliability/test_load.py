"""How the scenarios read a 5xx: the fault it names in the error shape, or what it was when it has none."""

from __future__ import annotations

import json

from reliability.load import answer_error


def test_a_shaped_5xx_names_its_fault_and_a_503_needs_retry_after() -> None:
    body = json.dumps({"error": {"code": "database_unavailable", "message": "down"}}).encode()
    assert answer_error(503, True, body) == "database_unavailable"
    assert answer_error(503, False, body) == "no-retry-after"
    assert answer_error(200, False, b"{}") is None and answer_error(404, False, b"") is None


def test_an_unshaped_5xx_shows_the_start_of_its_body() -> None:
    # uvicorn's own answer when an exception escapes the application: plain text, not the error shape.
    assert answer_error(500, False, b"Internal Server Error") == "unshaped b'Internal Server Error'"
    assert answer_error(502, False, b"x" * 100) == f"unshaped {b'x' * 40!r}"
