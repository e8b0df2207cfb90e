"""label sets: answers and guesses as text, long enough for a multi-label answer

An answer of a multi-label project is a set of labels stored as one string (its labels joined by
";", see labelwise.label_sets), which can exceed the 200 characters a single label had. The
columns holding an answer or a guess become TEXT; every stored value is kept as it is.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Each table and its columns that hold an answer or a guess, and whether they may be null.
COLUMNS = {
    "labels": [("value", True), ("predicted", True)],
    "leases": [("predicted", True)],
    "queue": [("predicted", True)],
    "triage_decisions": [("label", False)],
}


def _alter(widen: bool) -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column, nullable in columns:
                batch.alter_column(
                    column,
                    existing_type=sa.String(length=200) if widen else sa.Text(),
                    type_=sa.Text() if widen else sa.String(length=200),
                    existing_nullable=nullable,
                )


def upgrade() -> None:
    _alter(widen=True)


def downgrade() -> None:
    _alter(widen=False)
