"""Create revoked_subjects: a deleted user's tokens are refused on every replica until they expire.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No foreign key to users: the row outlives its user, whose deletion writes it.
    op.create_table(
        "revoked_subjects",
        sa.Column("user_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Written by the database itself, in the deleting transaction, as 0001's invalidation trigger is:
    # a delete made by any client revokes (psql, a replica still on the previous release during a
    # rolling upgrade). A revocation only moves forward.
    op.execute(
        """
        CREATE FUNCTION auth_revoke_deleted_user() RETURNS trigger AS $$
        BEGIN
            INSERT INTO revoked_subjects AS r (user_id, revoked_at) VALUES (OLD.id, now())
            ON CONFLICT (user_id) DO UPDATE SET revoked_at = greatest(r.revoked_at, excluded.revoked_at);
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER users_revoke_deleted
        AFTER DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION auth_revoke_deleted_user()
        """
    )
    # Every replica LISTENs on this channel too (on the invalidation listener's connection) and
    # refuses the subject's tokens issued up to revoked_at, sent in the payload so that no replica
    # has to read it back.
    op.execute(
        """
        CREATE FUNCTION auth_notify_subject_revoked() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify(
                'auth_subject_revoked', NEW.user_id::text || ' ' || extract(epoch FROM NEW.revoked_at)::text
            );
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER revoked_subjects_notify
        AFTER INSERT OR UPDATE ON revoked_subjects
        FOR EACH ROW EXECUTE FUNCTION auth_notify_subject_revoked()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS users_revoke_deleted ON users")
    op.execute("DROP FUNCTION IF EXISTS auth_revoke_deleted_user()")
    op.drop_table("revoked_subjects")  # its trigger goes with it
    op.execute("DROP FUNCTION IF EXISTS auth_notify_subject_revoked()")
