"""jobs, embeddings, job_metrics; pgvector extension and HNSW indexes on PostgreSQL

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

from storage.pg_index import DEFAULT_INDEXED_DIMS, hnsw_index_ddl
from storage.vector_type import VectorType

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.String(255)),
        sa.Column("prompt_name", sa.String(64)),
        sa.Column("dims", sa.Integer),
        sa.Column("normalize", sa.Boolean, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("dim", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("batch_ids", sa.JSON, nullable=False),
        sa.Column("worker", sa.String(255)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_table(
        "embeddings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("vector", VectorType(), nullable=False),
        sa.UniqueConstraint("job_id", "idx", name="uq_embeddings_job_idx"),
    )
    op.create_index("ix_embeddings_content_hash", "embeddings", ["content_hash"])
    op.create_index("ix_embeddings_model_dim", "embeddings", ["model", "dim"])
    op.create_table(
        "job_metrics",
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("queue_wait_ms", sa.Float, nullable=False),
        sa.Column("batch_wait_ms", sa.Float, nullable=False),
        sa.Column("tokenize_ms", sa.Float, nullable=False),
        sa.Column("forward_ms", sa.Float, nullable=False),
        sa.Column("persist_ms", sa.Float, nullable=False),
        sa.Column("total_ms", sa.Float, nullable=False),
        sa.Column("batch_size", sa.Integer, nullable=False),
        sa.Column("batch_jobs", sa.Integer, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("truncated", sa.Integer, nullable=False),
        sa.Column("cache_hits", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    if pg:
        for dim in DEFAULT_INDEXED_DIMS:
            op.execute(hnsw_index_ddl(dim))


def downgrade() -> None:
    op.drop_table("job_metrics")
    op.drop_table("embeddings")
    op.drop_table("jobs")
