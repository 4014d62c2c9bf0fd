"""Page type, last check time, and full-text search over titles, summaries and keywords.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("items", sa.Column("page_type", sa.Text))
    op.add_column("items", sa.Column("last_checked_at", sa.DateTime(timezone=True)))
    # 'simple' configuration: the library is multilingual, so no language-specific stemming.
    op.execute("""
        ALTER TABLE items ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('simple', coalesce(title, '')), 'A') ||
            setweight(to_tsvector('simple', coalesce(summary, '')), 'B') ||
            setweight(to_tsvector('simple', coalesce(keywords::text, '')), 'B')
        ) STORED""")
    op.create_index("items_search_idx", "items", ["search_tsv"], postgresql_using="gin")
    op.create_index("items_domain_idx", "items", ["domain"])
    op.create_index("items_tier_idx", "items", ["tier"])


def downgrade() -> None:
    op.drop_index("items_tier_idx")
    op.drop_index("items_domain_idx")
    op.drop_index("items_search_idx")
    op.drop_column("items", "search_tsv")
    op.drop_column("items", "last_checked_at")
    op.drop_column("items", "page_type")
