"""chunks: the windows of long texts embedded with overflow="chunk" (one vector per chunk with its
token and character offsets), and each job's chunk count

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

from storage.vector_type import VectorType

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chunks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("chunk", sa.Integer, nullable=False),
        sa.Column("token_start", sa.Integer, nullable=False),
        sa.Column("token_end", sa.Integer, nullable=False),
        sa.Column("char_start", sa.Integer, nullable=False),
        sa.Column("char_end", sa.Integer, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("model_hash", sa.String(64)),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("vector", VectorType(), nullable=False),
        sa.UniqueConstraint("job_id", "idx", "chunk", name="uq_chunks_job_idx_chunk"),
    )
    op.create_index("ix_chunks_model_hash_dim", "chunks", ["model_hash", "dim"])
    op.create_index("ix_chunks_model_dim", "chunks", ["model", "dim"])
    with op.batch_alter_table("job_metrics") as t:
        t.add_column(sa.Column("chunks", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("job_metrics") as t:
        t.drop_column("chunks")
    op.drop_table("chunks")
