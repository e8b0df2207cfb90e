"""The annotator's loop against the database: next item (under a lease), label, skip, undo.

Two parts, one concept each: handing items out under leases (:mod:`labelwise.store.leasing`:
:func:`next_item`, :func:`release`) and the answers given to them
(:mod:`labelwise.store.answers`: :func:`submit_label`, :func:`skip_item`, :func:`undo_last`).
This module names them together, as the server and the CLI use them.

Invariants kept, inside one write transaction each:

- an item is handed out only while its current labels plus other annotators' unexpired leases
  stay below its ``target`` (1, or 2 for overlap items), and never twice to the same annotator;
- every path that leases or labels an item first locks the item's row (``FOR UPDATE`` on
  PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers), then re-checks availability in a
  fresh statement, so two annotators can never both take the last free slot;
- a submit with a ``request_id`` already stored, or repeating the annotator's current answer,
  changes nothing and returns the stored label (a retried or doubled request is harmless);
- history is append-only: relabel and undo add rows that supersede, nothing is deleted.
"""

from __future__ import annotations

from labelwise.store.answers import MAX_GROUP, SubmitResult, skip_item, submit_label, undo_last
from labelwise.store.leasing import MAX_HELD, Assignment, database_now, next_item, release
from labelwise.store.models import utcnow

__all__ = [
    "MAX_GROUP",
    "MAX_HELD",
    "Assignment",
    "SubmitResult",
    "database_now",
    "next_item",
    "release",
    "skip_item",
    "submit_label",
    "undo_last",
    "utcnow",
]
