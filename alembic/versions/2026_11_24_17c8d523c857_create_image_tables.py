"""create image tables

Revision ID: 17c8d523c857
Revises:
Create Date: 2026-11-24 16:24:17.907333
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "17c8d523c857"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "image",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("visibility", sa.String(length=20), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("os_hidden", sa.Boolean(), nullable=False),
        sa.Column("checksum", sa.String(length=32), nullable=True),
        sa.Column("os_hash_algo", sa.String(length=64), nullable=True),
        sa.Column("os_hash_value", sa.String(length=128), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("virtual_size", sa.BigInteger(), nullable=True),
        sa.Column("disk_format", sa.String(length=32), nullable=True),
        sa.Column("container_format", sa.String(length=32), nullable=True),
        sa.Column("min_ram", sa.Integer(), nullable=False),
        sa.Column("min_disk", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "deleted_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=True,
        ),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_checksum"), ["checksum"], unique=False)
        batch_op.create_index("ix_image_created_at_id", ["created_at", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_image_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_image_os_hash_value"), ["os_hash_value"], unique=False)
        batch_op.create_index("ix_image_owner_created_at", ["owner", "created_at"], unique=False)
        batch_op.create_index("ix_image_updated_at_id", ["updated_at", "id"], unique=False)
        batch_op.create_index(
            "ix_image_visibility_created_at", ["visibility", "created_at"], unique=False
        )

    op.create_table(
        "image_member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("member", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("can_share", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["image.id"],
            name=op.f("fk_image_member_image_id_image"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_member")),
        sa.UniqueConstraint("image_id", "member", name=op.f("uq_image_member_image_id_member")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("image_member", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_member_member"), ["member"], unique=False)

    op.create_table(
        "image_property",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column(
            "value",
            sa.Text()
            .with_variant(mysql.MEDIUMTEXT(), "mariadb")
            .with_variant(mysql.MEDIUMTEXT(), "mysql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["image.id"],
            name=op.f("fk_image_property_image_id_image"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_property")),
        sa.UniqueConstraint("image_id", "name", name=op.f("uq_image_property_image_id_name")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("image_property", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_property_name"), ["name"], unique=False)

    op.create_table(
        "image_tag",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["image.id"], name=op.f("fk_image_tag_image_id_image"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_tag")),
        sa.UniqueConstraint("image_id", "value", name=op.f("uq_image_tag_image_id_value")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("image_tag", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_tag_value"), ["value"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_tag", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_tag_value"))

    op.drop_table("image_tag")
    with op.batch_alter_table("image_property", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_property_name"))

    op.drop_table("image_property")
    with op.batch_alter_table("image_member", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_member_member"))

    op.drop_table("image_member")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_index("ix_image_visibility_created_at")
        batch_op.drop_index("ix_image_updated_at_id")
        batch_op.drop_index("ix_image_owner_created_at")
        batch_op.drop_index(batch_op.f("ix_image_os_hash_value"))
        batch_op.drop_index(batch_op.f("ix_image_name"))
        batch_op.drop_index("ix_image_created_at_id")
        batch_op.drop_index(batch_op.f("ix_image_checksum"))

    op.drop_table("image")
