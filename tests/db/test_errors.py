"""Which database faults are a 503 (the database's), and which pass through (the request's or the code's)."""

from __future__ import annotations

import asyncpg
import pytest
from asyncpg import exceptions

from auth_service.db.engine import translate_db_errors
from auth_service.errors import ServiceUnavailable

UNAVAILABLE = [
    ConnectionRefusedError(111, "refused"),
    TimeoutError(),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    exceptions.CrashShutdownError("terminating connection because of crash of another server process"),
    exceptions.DatabaseDroppedError("database dropped"),
    exceptions.IdleSessionTimeoutError("idle session timeout"),
    exceptions.TooManyConnectionsError("sorry, too many clients already"),
    exceptions.DiskFullError("could not extend file"),
]


@pytest.mark.parametrize("fault", UNAVAILABLE, ids=lambda fault: type(fault).__name__)
def test_a_fault_of_the_database_is_a_503_database_unavailable(fault: BaseException) -> None:
    with pytest.raises(ServiceUnavailable) as raised, translate_db_errors():
        raise fault
    assert raised.value.code == "database_unavailable"


def test_its_statement_timeout_is_a_503_database_timeout() -> None:
    with pytest.raises(ServiceUnavailable) as raised, translate_db_errors():
        raise asyncpg.QueryCanceledError("canceling statement due to statement timeout")
    assert raised.value.code == "database_timeout"


@pytest.mark.parametrize(
    "error",
    [asyncpg.UniqueViolationError("duplicate key"), asyncpg.PostgresSyntaxError("syntax"), ValueError("bad")],
    ids=lambda error: type(error).__name__,
)
def test_an_error_of_the_request_or_the_code_passes_through(error: Exception) -> None:
    with pytest.raises(type(error)), translate_db_errors():
        raise error
