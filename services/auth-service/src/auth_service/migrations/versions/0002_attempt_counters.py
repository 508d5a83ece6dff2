"""Create attempt_counters: the failed-login and signup counters the replicas share.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # UNLOGGED: no WAL for a write per failed login, and nothing for standbys to replay. A crash
    # empties the table, which only restarts the windows (an hour at most); the counters are ephemeral.
    op.create_table(
        "attempt_counters",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("attempt_counters")
