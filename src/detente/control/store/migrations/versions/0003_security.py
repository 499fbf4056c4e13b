"""Security: shared job specs, a version per job (compare-and-set), Unix users, audit.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "job_specs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("data", sa.JSON, nullable=False),
    )
    # Each existing job keeps its own spec, under its own id.
    op.execute("INSERT INTO job_specs (id, data) SELECT id, spec FROM jobs")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('job_specs', 'id'), "
            "COALESCE((SELECT MAX(id) FROM job_specs), 0) + 1, false)"
        )
    with op.batch_alter_table("jobs") as t:
        t.add_column(sa.Column("spec_id", sa.Integer, nullable=True))
        t.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE jobs SET spec_id = id")
    with op.batch_alter_table("jobs") as t:
        t.alter_column("spec_id", existing_type=sa.Integer, nullable=False)
        t.create_foreign_key("fk_jobs_spec_id", "job_specs", ["spec_id"], ["id"])
        t.create_index("ix_jobs_spec_id", ["spec_id"])
        t.drop_column("spec")
    with op.batch_alter_table("users") as t:
        t.add_column(sa.Column("unix_user", sa.String(100), nullable=True))
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.Float, nullable=False, index=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit")
    with op.batch_alter_table("users") as t:
        t.drop_column("unix_user")
    with op.batch_alter_table("jobs") as t:
        t.add_column(sa.Column("spec", sa.JSON, nullable=True))
    op.execute(
        "UPDATE jobs SET spec = (SELECT data FROM job_specs WHERE job_specs.id = jobs.spec_id)"
    )
    with op.batch_alter_table("jobs") as t:
        t.drop_index("ix_jobs_spec_id")
        t.drop_constraint("fk_jobs_spec_id", type_="foreignkey")
        t.drop_column("spec_id")
        t.drop_column("version")
    op.drop_table("job_specs")
