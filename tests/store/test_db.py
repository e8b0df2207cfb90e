"""The database wrapper: durable commits for answers, lazy ones for leases, planner statistics."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from labelwise.exceptions import InvalidParameterError
from labelwise.store.db import Database


def _flush_setting(session, db: Database) -> str:
    if db.is_sqlite:
        # 2 = FULL, 1 = NORMAL
        return {2: "full", 1: "normal"}[session.execute(text("PRAGMA synchronous")).scalar_one()]
    return str(session.execute(text("SHOW synchronous_commit")).scalar_one())


def test_answers_wait_for_the_disk_and_leases_do_not(db):
    with db.write() as s:
        durable = _flush_setting(s, db)
    with db.write(durable=False) as s:
        lazy = _flush_setting(s, db)
    with db.write() as s:  # the lazy setting does not leak into the next transaction
        again = _flush_setting(s, db)
    assert (durable, again) == (("full", "full") if db.is_sqlite else ("on", "on"))
    assert lazy == ("normal" if db.is_sqlite else "off")


def test_a_lazy_write_is_still_a_transaction(db):
    def fail_midway() -> None:
        with db.write(durable=False) as s:
            s.execute(text("CREATE TABLE scratch_lazy (x INTEGER)"))
            s.execute(text("INSERT INTO scratch_lazy VALUES (1)"))
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        fail_midway()
    with db.read() as s:
        if db.is_sqlite:
            found = s.execute(
                text("SELECT count(*) FROM sqlite_master WHERE name = 'scratch_lazy'")
            ).scalar_one()
        else:
            found = s.execute(
                text("SELECT count(*) FROM pg_tables WHERE tablename = 'scratch_lazy'")
            ).scalar_one()
    assert found == 0


def test_analyze_runs_on_either_database(db):
    db.analyze()  # no error, also with nothing to analyse


@pytest.mark.parametrize("url", ["not a url", "mysql://u@h/db"])
def test_bad_urls_are_named(url):
    with pytest.raises(InvalidParameterError):
        Database(url)
