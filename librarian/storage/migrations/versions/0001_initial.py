"""Items and their versions.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", postgresql.UUID(as_uuid=False), primary_key=True),
        sa.Column("canonical_url", sa.Text, nullable=False, unique=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("domain", sa.Text, nullable=False),
        sa.Column("partition_key", sa.Text, nullable=False, unique=True),
        sa.Column("title", sa.Text),
        sa.Column("author", sa.Text),
        sa.Column("published", sa.Text),
        sa.Column("language", sa.Text),
        sa.Column("summary", sa.Text),
        sa.Column("keywords", postgresql.JSONB, nullable=False, server_default="[]"),
        sa.Column("tier", sa.Text),
        sa.Column("quality_score", sa.Float),
        sa.Column("word_count", sa.Integer),
        sa.Column("current_version", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    op.create_index("items_updated_idx", "items", [sa.text("updated_at DESC"), sa.text("id DESC")])
    op.create_table(
        "item_versions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("item_id", postgresql.UUID(as_uuid=False),
                  sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("final_url", sa.Text),
        sa.Column("status_code", sa.Integer),
        sa.Column("content_type", sa.Text),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("object_keys", postgresql.JSONB, nullable=False),
        sa.Column("quality_score", sa.Float),
        sa.Column("tier", sa.Text),
        sa.Column("word_count", sa.Integer),
        sa.Column("chunk_count", sa.Integer),
        sa.Column("embedding_model", sa.Text),
        sa.Column("run_id", sa.Text),
        sa.UniqueConstraint("item_id", "version"),
        sa.UniqueConstraint("item_id", "content_hash"),
    )


def downgrade() -> None:
    op.drop_table("item_versions")
    op.drop_table("items")
