"""provenance: the model file each vector came from (by content hash) and each vector's token count
and truncation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_files",
        sa.Column("content_hash", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("architecture", sa.String(64), nullable=False),
        sa.Column("weight_type", sa.String(32), nullable=False),
        sa.Column("pooling", sa.String(32), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("jobs") as t:
        t.add_column(sa.Column("model_hash", sa.String(64)))
    with op.batch_alter_table("embeddings") as t:
        t.add_column(sa.Column("model_hash", sa.String(64)))
        t.add_column(sa.Column("tokens", sa.Integer))
        t.add_column(sa.Column("truncated", sa.Boolean))
        t.create_index("ix_embeddings_model_hash_dim", ["model_hash", "dim"])


def downgrade() -> None:
    with op.batch_alter_table("embeddings") as t:
        t.drop_index("ix_embeddings_model_hash_dim")
        t.drop_column("truncated")
        t.drop_column("tokens")
        t.drop_column("model_hash")
    with op.batch_alter_table("jobs") as t:
        t.drop_column("model_hash")
    op.drop_table("model_files")
