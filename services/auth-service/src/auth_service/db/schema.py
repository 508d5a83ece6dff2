"""The tables, as SQLAlchemy Core metadata; Alembic migrations create them."""

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, Table, Text, func, text
from sqlalchemy.dialects.postgresql import UUID

# The channel a trigger NOTIFYs with a user's id on every UPDATE and DELETE of that user,
# in the writing transaction, so that every replica drops its cached copy when it commits.
INVALIDATION_CHANNEL = "auth_user_changed"
# The channel a trigger NOTIFYs with "<user_id> <revoked_at in epoch seconds>" on every write of
# revoked_subjects: every replica then refuses that subject's tokens issued up to that instant.
REVOCATION_CHANNEL = "auth_subject_revoked"

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("email", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
# Emails are unique regardless of case; the original spelling is kept for display.
Index("users_email_lower_key", text("lower(email)"), unique=True, _table=users)

# Failed logins and signups per key and window (security/counters_postgres.py), when Redis does not
# hold them. UNLOGGED (the migration says why).
attempt_counters = Table(
    "attempt_counters",
    metadata,
    Column("key", Text, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    prefixes=["UNLOGGED"],
)

# Subjects whose tokens issued up to revoked_at are refused (security/revocations.py). A trigger
# writes a row as its user is deleted; no foreign key, since the user's row is gone by then.
revoked_subjects = Table(
    "revoked_subjects",
    metadata,
    Column("user_id", UUID(as_uuid=True), primary_key=True),
    Column("revoked_at", DateTime(timezone=True), nullable=False),
)
