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
    above. The file imports back with :func:`labelwise.store.transfer.import_file` (the first
    annotation gives the label). Label Studio itself shows the images once they are served to
    it (local storage), since it does not read relative paths.

Items are read in chunks of rows and each record is written as it is made, so the file is
never built in memory; only the resolved labels (one entry per labeled item) are held.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.store.features import field_names, item_fields, tabular_fields
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import Annotator, Item, Label, Project, TriageDecision
from labelwise.store.review import resolved_labels

__all__ = ["EXPORT_FORMATS", "export_project"]

EXPORT_FORMATS = ("csv", "jsonl", "label-studio")

#: Items read per query (and label lookups per ``IN`` list, well under SQLite's limit).
_CHUNK = 500
#: The folder image contents are relative to: ``ProjectFolder.media_dir`` is ``root / "media"``.
_MEDIA = "media"
_FIXED = ("id", "label", "status", "annotations")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# Ids Label Studio can keep as its integer task ids (and that read back to the same string).
_TASK_INT = re.compile(r"0|[1-9]\d{0,17}")


@dataclass(frozen=True)
class _Record:
    external_id: str
    content: str | dict[str, float]
    label: str | None
    status: str
    annotations: list[dict[str, Any]]


def export_project(
    session: Session,
    project: Project,
    fmt: str,
    out: IO[str] | str | os.PathLike[str],
    *,
    labeled_only: bool = False,
    folder: ProjectFolder | None = None,
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
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidParameterError(f"fmt must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if fmt == "label-studio" and project.kind == "tabular":
        raise InvalidParameterError(
            "Label Studio export holds text or image tasks; export a tabular project as csv or "
            "jsonl"
        )
    fields = _field_names(session, project, folder) if project.kind == "tabular" else []
    clash = sorted(set(fields) & set(_FIXED))
    if clash:
        raise InvalidDataError(
            f"the project's field(s) {', '.join(map(repr, clash))} have the name of a column the "
            f"export adds ({', '.join(_FIXED)})"
        )
    records = _records(session, project, folder, labeled_only=labeled_only)
    write = _WRITERS[fmt]
    if not isinstance(out, (str, os.PathLike)):
        return write(out, project, records, fields)
    path = Path(out)
    tmp = path.with_name(path.name + ".part")
    try:
        encoding = "utf-8-sig" if fmt == "csv" else "utf-8"
        with tmp.open("w", encoding=encoding, newline="") as fh:
            count = write(fh, project, records, fields)
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
    session: Session, project: Project, folder: ProjectFolder | None, *, labeled_only: bool
) -> Iterator[_Record]:
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
        for r in rows:
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
            yield _Record(r.external_id, content[r.id], label, status, given)


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


# ------------------------------------------------------------------------------------ writing


def _content_columns(project: Project, fields: list[str]) -> list[str]:
    return fields if project.kind == "tabular" else [project.kind]


def _flat(project: Project, record: _Record, fields: list[str]) -> dict[str, Any]:
    """The record as one flat mapping of column -> value (tabular fields side by side)."""
    row: dict[str, Any] = {"id": record.external_id}
    if isinstance(record.content, dict):
        row.update({name: record.content.get(name) for name in fields})
    else:
        row[project.kind] = record.content
    row.update(label=record.label, status=record.status, annotations=record.annotations)
    return row


def _safe_cell(value: str) -> str:
    """``value`` with a leading ``'`` when a spreadsheet would read it as a formula."""
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, float):
        return repr(value)
    return _safe_cell(str(value))


def _write_csv(
    out: IO[str], project: Project, records: Iterator[_Record], fields: list[str]
) -> int:
    columns = ["id", *_content_columns(project, fields), "label", "status", "annotations"]
    writer = csv.writer(out)
    writer.writerow([_safe_cell(c) for c in columns])
    count = 0
    for record in records:
        row = _flat(project, record, fields)
        writer.writerow([_csv_value(row[c]) for c in columns])
        count += 1
    return count


def _write_jsonl(
    out: IO[str], project: Project, records: Iterator[_Record], fields: list[str]
) -> int:
    count = 0
    for record in records:
        out.write(json.dumps(_flat(project, record, fields), ensure_ascii=False) + "\n")
        count += 1
    return count


def _task(project: Project, record: _Record) -> dict[str, Any]:
    to_name = project.kind
    annotations: list[dict[str, Any]] = []
    for answer in record.annotations:
        annotation: dict[str, Any] = {
            "result": [
                {
                    "id": f"lw{len(annotations)}",
                    "type": "choices",
                    "from_name": "label",
                    "to_name": to_name,
                    "value": {"choices": [answer["label"]]},
                    "origin": "manual",
                }
            ],
            "was_cancelled": False,
            "ground_truth": answer["action"] == "adjudicate",
            "created_at": answer["created_at"],
            "updated_at": answer["created_at"],
        }
        if answer.get("duration_ms") is not None:  # triage's decisions have no duration
            annotation["lead_time"] = answer["duration_ms"] / 1000
        annotations.append(annotation)
    ext = record.external_id
    return {
        "id": int(ext) if _TASK_INT.fullmatch(ext) else ext,
        "data": {to_name: record.content},
        "annotations": annotations,
        "predictions": [],
        "meta": {
            "external_id": ext,
            "label": record.label,
            "status": record.status,
            "annotations": record.annotations,
        },
    }


def _write_label_studio(
    out: IO[str], project: Project, records: Iterator[_Record], fields: list[str]
) -> int:
    count = 0
    out.write("[")
    for record in records:
        out.write(",\n" if count else "\n")
        out.write(json.dumps(_task(project, record), ensure_ascii=False))
        count += 1
    out.write("\n]\n")
    return count


_WRITERS: dict[str, Callable[[IO[str], Project, Iterator[_Record], list[str]], int]] = {
    "csv": _write_csv,
    "jsonl": _write_jsonl,
    "label-studio": _write_label_studio,
}
