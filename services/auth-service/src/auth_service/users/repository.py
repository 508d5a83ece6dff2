"""SQL for users: prepared asyncpg statements for the hot reads, SQLAlchemy Core for the writes."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import delete, extract, func, insert, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import RowMapping

from auth_service.db.engine import Database
from auth_service.db.schema import users

_PUBLIC = "id, email, name, created_at, updated_at"
# asyncpg prepares each text once per connection and keeps it in its statement cache.
SELECT_USER = f"SELECT {_PUBLIC} FROM users WHERE id = $1"  # noqa: S608 - constant columns
SELECT_CREDENTIALS = "SELECT id, password_hash FROM users WHERE lower(email) = lower($1)"
SELECT_OWN_CREDENTIALS = "SELECT email, password_hash FROM users WHERE id = $1"
SELECT_TAKEN_EMAILS = "SELECT lower(email) FROM users WHERE lower(email) = ANY($1::text[])"
# One statement, one round trip, for a whole batch.
INSERT_MANY = (
    "INSERT INTO users (id, email, name, password_hash) "  # noqa: S608 - constant columns
    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) "
    f"RETURNING {_PUBLIC}"
)
PUBLIC_COLUMNS = (users.c.id, users.c.email, users.c.name, users.c.created_at, users.c.updated_at)


class DuplicateEmail(Exception):
    """The email (compared without case) belongs to another user."""


def _is_unique_violation(exc: sa_exc.DBAPIError) -> bool:
    return isinstance(getattr(exc.orig, "__cause__", None), asyncpg.UniqueViolationError)


async def fetch_user(db: Database, user_id: uuid.UUID) -> asyncpg.Record | None:
    async with db.driver_connection() as conn:
        return await conn.fetchrow(SELECT_USER, user_id)


async def fetch_credentials(db: Database, email: str) -> asyncpg.Record | None:
    if "\x00" in email:
        # PostgreSQL text cannot hold NUL (it would refuse the parameter): no user has this email.
        return None
    async with db.driver_connection() as conn:
        return await conn.fetchrow(SELECT_CREDENTIALS, email)


async def fetch_own_credentials(db: Database, user_id: uuid.UUID) -> asyncpg.Record | None:
    """The email and password hash of a user re-authenticating (a change of email or password, a delete)."""
    async with db.driver_connection() as conn:
        return await conn.fetchrow(SELECT_OWN_CREDENTIALS, user_id)


async def insert_user(db: Database, email: str, name: str, password_hash: str) -> RowMapping:
    statement = (
        insert(users)
        .values(id=uuid.uuid4(), email=email, name=name, password_hash=password_hash)
        .returning(*PUBLIC_COLUMNS)
    )
    try:
        async with db.transaction() as conn:
            return (await conn.execute(statement)).mappings().one()
    except sa_exc.IntegrityError as exc:
        if _is_unique_violation(exc):
            raise DuplicateEmail(email) from exc
        raise


async def taken_emails(db: Database, emails: Sequence[str]) -> set[str]:
    """Which of these emails (lower-cased) are already taken."""
    async with db.driver_connection() as conn:
        return {row[0] for row in await conn.fetch(SELECT_TAKEN_EMAILS, [e.lower() for e in emails])}


async def insert_users(db: Database, rows: Sequence[tuple[str, str, str]]) -> list[asyncpg.Record]:
    """Insert (email, name, password_hash) rows all together or not at all."""
    # Every batch inserts in the same order (by email), so two batches sharing emails queue on the
    # unique index and the later one fails with a duplicate (409) instead of a deadlock (500).
    rows = sorted(rows, key=lambda row: row[0].lower())
    ids = [uuid.uuid4() for _ in rows]
    emails, names, hashes = (list(column) for column in zip(*rows, strict=True))
    try:
        async with db.driver_connection() as conn, conn.transaction():
            return list(await conn.fetch(INSERT_MANY, ids, emails, names, hashes))
    except asyncpg.UniqueViolationError as exc:
        raise DuplicateEmail("") from exc


# The columns a PATCH changes. Each set of them gets one statement text, made once, which asyncpg
# prepares once per connection: through SQLAlchemy Core a rename cost 3.9 ms of CPU on a core at
# half speed, 40% of it building and compiling the statement (py-spy, renames only, 2026-11-29).
UPDATABLE_COLUMNS = frozenset({"name", "email", "password_hash"})


@functools.cache
def update_statement(columns: tuple[str, ...]) -> str:
    if not columns or not UPDATABLE_COLUMNS.issuperset(columns):
        raise ValueError(f"cannot update {columns}; only {sorted(UPDATABLE_COLUMNS)}")
    assignments = ", ".join(f"{column} = ${index}" for index, column in enumerate(columns, start=2))
    return f"UPDATE users SET {assignments}, updated_at = now() WHERE id = $1 RETURNING {_PUBLIC}"  # noqa: S608 - names from UPDATABLE_COLUMNS


async def update_user(db: Database, user_id: uuid.UUID, changes: Mapping[str, Any]) -> asyncpg.Record | None:
    """The user's public columns after the change, or None when there is no such user."""
    columns = tuple(sorted(changes))
    statement = update_statement(columns)
    try:
        async with db.driver_connection() as conn:
            return await conn.fetchrow(statement, user_id, *(changes[column] for column in columns))
    except asyncpg.UniqueViolationError as exc:
        raise DuplicateEmail(str(changes.get("email", ""))) from exc


async def replace_password_hash(db: Database, user_id: uuid.UUID, old_hash: str, new_hash: str) -> None:
    """Swap the hash only if nobody changed it meanwhile (a rehash must not undo a password change)."""
    statement = (
        update(users).where(users.c.id == user_id, users.c.password_hash == old_hash).values(password_hash=new_hash)
    )
    async with db.transaction() as conn:
        await conn.execute(statement)


async def delete_user(db: Database, user_id: uuid.UUID) -> float | None:
    """Delete the user: when its tokens were revoked (epoch seconds), or None when there was no such user.

    A trigger revokes them in the same transaction (migration 0003) at now(), the instant returned.
    """
    statement = delete(users).where(users.c.id == user_id).returning(extract("epoch", func.now()))
    async with db.transaction() as conn:
        revoked_at = (await conn.execute(statement)).scalar_one_or_none()
    return None if revoked_at is None else float(revoked_at)
