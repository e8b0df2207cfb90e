"""The database wrapper: durable commits for answers, lazy ones for leases, planner statistics."""

from __future__ import annotations

from typing import Any

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


def _planner_rows(db: Database, table: str) -> float | None:
    """The row count the planner's statistics hold for ``table`` (None: none gathered)."""
    with db.read() as s:
        if db.is_sqlite:
            if not s.execute(
                text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
            ).scalar_one():
                return None
            # One row per index of the table; its "stat" starts with the rows in the table.
            stats = s.execute(
                text("SELECT stat FROM sqlite_stat1 WHERE tbl = :t"), {"t": table}
            ).scalars()
            counts = {int(stat.split()[0]) for stat in stats}
            assert len(counts) <= 1, counts
            return counts.pop() if counts else None
        # -1: never analysed (nor vacuumed) since the table was filled or created.
        rows = s.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = :t AND relkind = 'r'"),
            {"t": table},
        ).scalar_one()
        return None if rows < 0 else float(rows)


def test_analyze_runs_on_either_database(db: Database, store: Any) -> None:
    db.analyze()  # no error, also with nothing to analyse
    with db.read() as s:
        started = None if db.is_sqlite else s.execute(text("SELECT now()")).scalar_one()
    store.project(12)
    store.project(5, name="other")
    db.analyze()
    # The planner now knows the items table holds 17 rows (a statistic gathered before the
    # items came would say 0; none at all is what analyze is there to end).
    assert _planner_rows(db, "items") == 17
    if not db.is_sqlite:
        with db.read() as s:
            analysed = s.execute(
                text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'items'")
            ).scalar_one()
        assert analysed is not None and analysed >= started


@pytest.mark.parametrize("url", ["not a url", "mysql://u@h/db"])
def test_bad_urls_are_named(url):
    with pytest.raises(InvalidParameterError):
        Database(url)
