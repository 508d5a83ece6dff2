"""Create users, the case-insensitive email index and the invalidation trigger.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("users_email_lower_key", "users", [sa.text("lower(email)")], unique=True)
    # Every replica LISTENs on this channel and drops the user from its cache. Sent by the
    # database itself, so a change made by any client (a migration, psql) invalidates too.
    op.execute(
        """
        CREATE FUNCTION auth_notify_user_changed() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('auth_user_changed', OLD.id::text);
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER users_notify_changed
        AFTER UPDATE OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION auth_notify_user_changed()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS users_notify_changed ON users")
    op.execute("DROP FUNCTION IF EXISTS auth_notify_user_changed()")
    op.drop_index("users_email_lower_key", table_name="users")
    op.drop_table("users")
