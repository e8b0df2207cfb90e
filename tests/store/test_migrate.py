"""Migrations: an empty database reaches the newest schema, and upgrading again is harmless."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from labelwise.store.db import Database
from labelwise.store.migrate import current_revision, head_revision, upgrade
from labelwise.store.models import Base


def test_upgrade_an_empty_database_to_head_twice(db_url):
    db = Database(db_url)
    try:
        assert current_revision(db) is None
        upgrade(db)
        assert head_revision() is not None
        assert current_revision(db) == head_revision()
        upgrade(db)  # harmless: nothing to do
        assert current_revision(db) == head_revision()
        tables = set(inspect(db.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
    finally:
        db.dispose()


def test_the_migrated_schema_matches_the_models(db):
    # A model changed without a migration would show up here as a difference.
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
