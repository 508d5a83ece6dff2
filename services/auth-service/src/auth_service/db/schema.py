"""The tables, as SQLAlchemy Core metadata; Alembic migrations create them."""

from sqlalchemy import Column, DateTime, Index, MetaData, Table, Text, func, text
from sqlalchemy.dialects.postgresql import UUID

# The channel a trigger NOTIFYs with a user's id on every UPDATE and DELETE of that user,
# in the writing transaction, so that every replica drops its cached copy when it commits.
INVALIDATION_CHANNEL = "auth_user_changed"

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
