"""location order, metadata and status

Revision ID: 7abf4e8722d8
Revises: a11e2f7b519e
Create Date: 2026-12-02 02:12:41.118305
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7abf4e8722d8"
down_revision: str | None = "a11e2f7b519e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added nullable, filled, then made required: existing rows keep their order (their ids
    # grew with each upload) and get Glance's defaults.
    with op.batch_alter_table("image_location", schema=None) as batch_op:
        batch_op.add_column(sa.Column("position", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("metadata", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("status", sa.String(length=30), nullable=True))
    location = sa.table(
        "image_location",
        sa.column("id", sa.Integer()),
        sa.column("position", sa.Integer()),
        sa.column("metadata", sa.Text()),
        sa.column("status", sa.String()),
    )
    op.execute(location.update().values(position=location.c.id, metadata="{}", status="active"))
    with op.batch_alter_table("image_location", schema=None) as batch_op:
        batch_op.alter_column("position", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("metadata", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("status", existing_type=sa.String(length=30), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("image_location", schema=None) as batch_op:
        batch_op.drop_column("status")
        batch_op.drop_column("metadata")
        batch_op.drop_column("position")
