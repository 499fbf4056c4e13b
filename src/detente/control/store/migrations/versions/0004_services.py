"""Services: the services table and a replica's service, slot, revision and port.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("team", sa.String(100), nullable=False),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("revision", sa.String(40), nullable=False),
        sa.Column("desired", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status", sa.JSON, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    )
    with op.batch_alter_table("jobs") as t:
        t.add_column(sa.Column("service", sa.String(100), nullable=True))
        t.add_column(sa.Column("slot", sa.Integer, nullable=True))
        t.add_column(sa.Column("revision", sa.String(40), nullable=True))
        t.add_column(sa.Column("port", sa.Integer, nullable=True))
        t.create_index("ix_jobs_service", ["service"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as t:
        t.drop_index("ix_jobs_service")
        for c in ("port", "revision", "slot", "service"):
            t.drop_column(c)
    op.drop_table("services")
