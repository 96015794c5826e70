"""The log's hash chain: a SHA-256 link per event in feed order, kept in blocks.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from ledger.schema import Xid8

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_chain",
        sa.Column("after_tx_id", Xid8(), nullable=False),
        sa.Column("after_position", sa.BigInteger(), nullable=False),
        sa.Column("tx_id", Xid8(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("positions", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("links", sa.LargeBinary(), nullable=False),
        sa.Column(
            "chained_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.PrimaryKeyConstraint("tx_id", "position", name=op.f("pk_audit_chain")),
        sa.UniqueConstraint(
            "after_tx_id", "after_position", name=op.f("uq_audit_chain_after_tx_id_after_position")
        ),
        sa.CheckConstraint(
            "cardinality(positions) >= 1 AND octet_length(links) = 32 * cardinality(positions)"
            " AND events >= cardinality(positions)",
            name=op.f("ck_audit_chain_one_link_per_event"),
        ),
    )


def downgrade() -> None:
    op.drop_table("audit_chain")
