"""Writing a project out: every item with its resolved label and everyone's answers.

One record per item, in row (import) order:

- ``id``: the item's external id;
- the content: ``text``; ``image``, the media file's path relative to the project folder
  (``media/…/0000003.png``); or, for tabular items, one column (key) per field;
- ``label``: the resolved label (an admin's adjudication, else the value every annotator agrees
  on; see :func:`labelwise.store.review.resolved_labels`), empty when there is none;
- ``status``: ``labeled``, ``conflict`` (annotators disagree, nobody adjudicated),
  ``automatic`` (no human answer, decided by triage: ``label`` holds the decision) or
  ``unlabeled``;
- ``annotations``: each standing answer, the adjudication first, then in the order given::

      {"annotator": "ana", "label": "spam", "action": "label", "duration_ms": 2100,
       "created_at": "2024-05-01T09:30:12.345Z"}

  ``action`` is ``label``, ``adjudicate``, or ``automatic`` for a triage decision (annotator
  ``triage``, with its calibrated ``confidence``); ``duration_ms`` is null when unknown
  (imported labels); times are UTC.

Formats (:data:`EXPORT_FORMATS`):

``csv``
    Columns ``id``, the content column(s), ``label``, ``status``, and ``annotations`` as compact
    JSON. Safe to open in a spreadsheet: a cell starting with ``=``, ``+``, ``-``, ``@``, tab or
    carriage return gets a leading ``'`` so that it is never run as a formula (plain numbers
    such as ``-2.5`` are left alone). Re-importing such a cell keeps the ``'``.
``jsonl``
    One JSON object per line, with the keys above.
``label-studio``
    A JSON list of Label Studio tasks (text and image projects): ``data`` holds ``text`` or
    ``image``; each answer is an annotation whose ``result`` is one ``choices`` entry
    (``from_name`` ``"label"``, ``to_name`` ``"text"``/``"image"``) with ``lead_time`` in
    seconds, and an adjudication comes first, marked ``ground_truth``. Label Studio has no place
    for annotator names, so ``meta`` carries the external id, label, status and the answers as
    above. The file imports back with :func:`labelwise.services.transfer.import_file` (the first
    annotation gives the label). Label Studio itself shows the images once they are served to
    it (local storage), since it does not read relative paths.

Predictions (``predictions=True``, ``labelwise export --predictions``): every record also
carries the prediction of the model the project serves (the worker's latest fit, on the
features it was fitted on; see :mod:`labelwise.store.served`):

- ``prediction``: the label the model predicts (its most probable class, the guess annotators
  are shown);
- ``confidence``: the model's probability for that label;
- one probability per label of the project, in the label set's order: columns ``p_<label>``
  in CSV (``p_ham``, ``p_spam``), a ``probabilities`` object (``{"ham": 0.07, "spam": 0.93}``)
  in JSONL. A label the model was not trained on yet (no labeled example) has 0;
- ``model_version``: that model's version number (the 3 of ``v3`` in ``labelwise status``,
  whose file is ``models/v00003.joblib``).

Probabilities are rounded to 6 decimals. A model without probabilities (``svm``,
``linear-svm``: decision values only) gives the prediction alone: ``confidence`` and the
probabilities are empty (null). In Label Studio JSON, a task's ``predictions`` list (empty
without predictions) holds one prediction in Label Studio's own format::

    {"model_version": "v3", "score": 0.93, "result": [{"from_name": "label", "to_name":
     "text", "type": "choices", "value": {"choices": ["spam"]}}]}

(``score`` is the confidence, left out without probabilities; ``to_name`` is ``image`` for
images). Every exported item is predicted, labeled ones too: on the items it was trained on a
model is right more often than on new ones (``labelwise status`` gives its cross-validated
quality). A project with no model yet, or whose model no longer fits its features (its
``features`` setting changed, or items were added to a TF-IDF pool since the fit), is refused
with a :class:`~labelwise.exceptions.ConflictError` that says why, before anything is written:
an export never holds empty or stale predictions. Brought back with ``labelwise init --data``
(:func:`labelwise.services.setup.init_project`), the prediction columns are ignored: never a
label, never a tabular feature.

Multi-label projects (``multi_label``): ``label`` is the resolved set of labels, written as a
list: its names joined by ``;`` in CSV (``[]`` for the empty set, an empty cell being no
label), a JSON list in JSONL (``[]`` for the empty set, null for no label), one ``choices``
result holding every label of the set in Label Studio (an empty ``choices`` list for the empty
set). Each answer under ``annotations`` (the history) keeps its stored form in every format:
the canonical string of the set, its labels in the project's order joined by ``;``
(``"insult;threat"``; ``""`` for the empty set). With predictions, ``prediction`` is the set the
model predicts (each label whose probability reaches that label's threshold), written as
``label`` is; ``p_<label>`` (``probabilities``) are the per-label probabilities, each in
[0, 1] on its own (they do not sum to 1); ``confidence`` is the probability of the set's least
sure label decision (of a label being there when predicted, absent when not). Every format
imports back into a multi-label project with its sets.

Items are read in chunks of rows and each record is written as it is made, so the file is
never built in memory; only the resolved labels (one entry per labeled item) are held, and
predictions are made a chunk of items at a time.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.services.export_formats import (
    FIXED_COLUMNS,
    PREDICTION_KEYS,
    WRITERS,
    Predicted,
    Record,
    prediction_columns,
)
from labelwise.store.features import field_names, item_fields, tabular_fields
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import Annotator, Item, Label, Project, TriageDecision
from labelwise.store.review import resolved_labels
from labelwise.store.served import ServedModel, served_model

__all__ = ["EXPORT_FORMATS", "PREDICTION_KEYS", "export_project", "prediction_columns"]

EXPORT_FORMATS = ("csv", "jsonl", "label-studio")

#: Items read per query (and label lookups per ``IN`` list, well under SQLite's limit).
_CHUNK = 500
#: The folder image contents are relative to: ``ProjectFolder.media_dir`` is ``root / "media"``.
_MEDIA = "media"
#: Decimals kept of a confidence or probability.
_DECIMALS = 6


def export_project(
    session: Session,
    project: Project,
    fmt: str,
    out: IO[str] | str | os.PathLike[str],
    *,
    labeled_only: bool = False,
    folder: ProjectFolder | None = None,
    predictions: bool = False,
) -> int:
    """Write every item of ``project`` in format ``fmt``; returns how many records were written.

    Parameters
    ----------
    session : Session
        A session to read with (nothing is written to the database).
    project : Project
    fmt : {"csv", "jsonl", "label-studio"}
    out : text file object or path
        A path is written through a temporary file beside it, renamed into place when complete
        (a failed export leaves no partial file). CSV written to a path starts with a UTF-8 byte
        order mark, which spreadsheet programs need to read UTF-8; a file object gets text only,
        and should be opened with ``newline=""`` for CSV.
    labeled_only : bool
        Leave out items nobody has labeled (conflicts are kept: they hold answers; so are
        triage's automatic decisions).
    folder : ProjectFolder, optional
        The project's folder: a tabular project's fields are read from its feature file.
        Needed for ``predictions``.
    predictions : bool
        Add the served model's prediction, confidence and probabilities to every record (see
        the module docstring). Refused (:class:`~labelwise.exceptions.ConflictError`, before
        anything is written) when the project has no model yet or its model no longer fits
        its features.
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidParameterError(f"fmt must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if fmt == "label-studio" and project.kind == "tabular":
        raise InvalidParameterError(
            "Label Studio export holds text or image tasks; export a tabular project as csv or "
            "jsonl"
        )
    fields = _field_names(session, project, folder) if project.kind == "tabular" else []
    added = list(FIXED_COLUMNS)
    if predictions:
        added += [*PREDICTION_KEYS, *prediction_columns(project.label_set)]
    clash = sorted(set(fields) & set(added))
    if clash:
        raise InvalidDataError(
            f"the project's field(s) {', '.join(map(repr, clash))} have the name of a column the "
            f"export adds ({', '.join(dict.fromkeys(added))})"
        )
    served = None
    if predictions:
        if folder is None:
            raise InvalidParameterError(
                "predictions need the project's folder (its model and feature files): pass folder="
            )
        served = served_model(session, project, folder)  # refused here: nothing written yet
    records = _records(session, project, folder, labeled_only=labeled_only, served=served)
    write = WRITERS[fmt]
    labels = None if served is None else served.labels
    if not isinstance(out, (str, os.PathLike)):
        return write(out, project, records, fields, labels)
    path = Path(out)
    tmp = path.with_name(path.name + ".part")
    try:
        encoding = "utf-8-sig" if fmt == "csv" else "utf-8"
        with tmp.open("w", encoding=encoding, newline="") as fh:
            count = write(fh, project, records, fields, labels)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


# ------------------------------------------------------------------------------------ reading


def _field_names(session: Session, project: Project, folder: ProjectFolder | None) -> list[str]:
    """The tabular fields, in column order (every import keeps the same fields)."""
    if folder is not None:
        return list(field_names(session, project, folder))
    first = session.scalar(
        select(Item.content).where(Item.project_id == project.id).order_by(Item.row).limit(1)
    )
    if first == "":
        raise InvalidParameterError(
            "a tabular project's fields live in its folder's feature file: pass folder= to export"
        )
    return [] if first is None else list(tabular_fields(first))


def _records(
    session: Session,
    project: Project,
    folder: ProjectFolder | None,
    *,
    labeled_only: bool,
    served: ServedModel | None = None,
) -> Iterator[Record]:
    resolved, conflicts = resolved_labels(session, project)
    conflicted = {c.item_id for c in conflicts}
    automatic = {
        d.item_id: d
        for d in session.scalars(
            select(TriageDecision).where(
                TriageDecision.project_id == project.id, TriageDecision.accepted.is_(True)
            )
        )
    }
    last = -1
    while True:
        rows = session.execute(
            select(Item.id, Item.row, Item.external_id, Item.content)
            .where(Item.project_id == project.id, Item.row > last)
            .order_by(Item.row)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        last = rows[-1].row
        if labeled_only:
            rows = [r for r in rows if r.id in resolved or r.id in conflicted or r.id in automatic]
        answers = _answers(session, [r.id for r in rows]) if rows else {}
        content = _contents(project, folder, rows)
        predicted = _predicted(served, rows)
        for k, r in enumerate(rows):
            label, given = resolved.get(r.id), answers.get(r.id, [])
            if r.id in resolved:
                status = "labeled"
            elif r.id in conflicted:
                status = "conflict"
            elif r.id in automatic and not given:
                decision = automatic[r.id]
                status, label = "automatic", decision.label
                given = [
                    {
                        "annotator": "triage",
                        "label": decision.label,
                        "action": "automatic",
                        "confidence": round(decision.confidence, 4),
                        "created_at": _timestamp(decision.created_at),
                    }
                ]
            else:
                status = "unlabeled"
            yield Record(
                r.external_id,
                content[r.id],
                label,
                status,
                given,
                predicted[k] if predicted else None,
            )


def _predicted(served: ServedModel | None, rows: Sequence[Any]) -> list[Predicted] | None:
    """The served model's prediction for each of ``rows`` (one chunk), or None without one.
    A multi-label model's prediction is a set, with its per-label probabilities and the
    probability of its least sure label decision as its confidence."""
    if served is None or not rows:
        return None
    out = served.predict(np.asarray([r.row for r in rows], dtype=np.intp))
    found = []
    for k, label in enumerate(out.labels):
        confidence = probabilities = None
        if out.confidence is not None and out.probabilities is not None:
            confidence = round(float(out.confidence[k]), _DECIMALS)
            probabilities = {
                name: round(float(p), _DECIMALS)
                for name, p in zip(served.labels, out.probabilities[k], strict=True)
            }
        found.append(Predicted(str(label), confidence, probabilities, served.version))
    return found


def _contents(
    project: Project, folder: ProjectFolder | None, rows: Sequence[Any]
) -> dict[int, str | dict[str, float]]:
    """Each item's content as exported, by item id: its fields, image path or text."""
    if project.kind == "tabular" and folder is not None:
        return {r.id: f for r, f in zip(rows, item_fields(folder, rows), strict=True)}
    return {r.id: _content(project, r.content) for r in rows}


def _content(project: Project, content: str) -> str | dict[str, float]:
    if project.kind == "tabular":
        return tabular_fields(content)
    if project.kind == "image":
        return f"{_MEDIA}/{content}"
    return content


def _answers(session: Session, item_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Each item's standing answers: the adjudication first, then labels in the order given."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    rows = session.execute(
        select(
            Label.item_id,
            Label.action,
            Label.value,
            Label.duration_ms,
            Label.created_at,
            Annotator.name,
        )
        .join(Annotator, Annotator.id == Label.annotator_id)
        .where(
            Label.item_id.in_(list(item_ids)),
            Label.is_current.is_(True),
            Label.action.in_(("label", "adjudicate")),
        )
        .order_by(Label.id)
    ).all()
    for row in sorted(rows, key=lambda r: r.action != "adjudicate"):  # stable: keeps id order
        out[row.item_id].append(
            {
                "annotator": row.name,
                "label": row.value,
                "action": row.action,
                "duration_ms": row.duration_ms,
                "created_at": _timestamp(row.created_at),
            }
        )
    return out


def _timestamp(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` (stored times are naive UTC)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
