"""The formats an export writes: CSV, JSONL and Label Studio JSON, one :class:`Record` at a
time.

:mod:`labelwise.services.export` reads the records (items, resolved labels, standing answers,
predictions) from the database; this module turns them into text. CSV cells that a spreadsheet
would run as a formula are prefixed with ``'``; Label Studio tasks keep an id that is a plain
integer as their task id; predictions become ``prediction``, ``confidence``, one ``p_<label>``
column per label and ``model_version`` (see :func:`prediction_columns`).

A multi-label project's label sets (stored as canonical strings, :mod:`labelwise.label_sets`)
are written as each format holds a list: the CSV ``label`` and ``prediction`` cells are the
names joined by ``;`` (``[]`` for the empty set, so that it is not read as no label), JSONL
gives JSON lists, Label Studio one ``choices`` result holding every label of the set (an empty
list for the empty set). The answers under ``annotations`` keep their stored form, the
canonical string (``""`` for the empty set), in every format.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from labelwise import label_sets
from labelwise.store.models import Project
from labelwise.store.projects import settings_of

__all__ = [
    "FIXED_COLUMNS",
    "PREDICTION_KEYS",
    "WRITERS",
    "Predicted",
    "Record",
    "prediction_columns",
]

#: The columns every record has, after its content.
FIXED_COLUMNS = ("id", "label", "status", "annotations")
#: The keys predictions add (JSONL; in CSV ``probabilities`` is one ``p_<label>`` column each).
PREDICTION_KEYS = ("prediction", "confidence", "probabilities", "model_version")
_PROBABILITY = "p_"
#: How a format writes a label set's canonical string (a list, a CSV cell).
_Sets = Callable[[str | None], Any]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# Ids Label Studio can keep as its integer task ids (and that read back to the same string).
_TASK_INT = re.compile(r"0|[1-9]\d{0,17}")


@dataclass(frozen=True)
class Predicted:
    """The served model's prediction for one item: the label, the probability it gives that
    label (None for a model without probabilities), every label's probability, and the model
    version."""

    label: str
    confidence: float | None
    probabilities: dict[str, float] | None
    model_version: int


@dataclass(frozen=True)
class Record:
    """One item as an export writes it: its id, content (a tabular item's fields as a
    mapping), resolved label, status, standing answers and, when asked for, the prediction."""

    external_id: str
    content: str | dict[str, float]
    label: str | None
    status: str
    annotations: list[dict[str, Any]]
    predicted: Predicted | None = None


def prediction_columns(labels: Sequence[str]) -> list[str]:
    """The CSV columns predictions add, in order, for a project of ``labels``."""
    return [
        "prediction",
        "confidence",
        *(_PROBABILITY + str(label) for label in labels),
        "model_version",
    ]


def _content_columns(project: Project, fields: list[str]) -> list[str]:
    return fields if project.kind == "tabular" else [project.kind]


def _as_list(value: str | None) -> list[str] | None:
    """A label set's canonical string as the list of its labels (None stays None)."""
    return None if value is None else label_sets.decode(value)


def _as_cell(value: str | None) -> str | None:
    """A label set's canonical string as a CSV cell: the names joined by ``;``, ``[]`` for the
    empty set (an empty cell is no label)."""
    return value if value is None or value else "[]"


def _flat(
    project: Project, record: Record, fields: list[str], sets: _Sets | None = None
) -> dict[str, Any]:
    """The record as one flat mapping of column -> value (tabular fields side by side);
    ``sets`` writes a multi-label project's sets (its label and prediction) in the format's
    way (:func:`_as_list`, :func:`_as_cell`)."""
    row: dict[str, Any] = {"id": record.external_id}
    if isinstance(record.content, dict):
        row.update({name: record.content.get(name) for name in fields})
    else:
        row[project.kind] = record.content
    label = record.label if sets is None else sets(record.label)
    row.update(label=label, status=record.status, annotations=record.annotations)
    if record.predicted is not None:
        p = record.predicted
        row.update(
            prediction=p.label if sets is None else sets(p.label),
            confidence=p.confidence,
            probabilities=p.probabilities,
            model_version=p.model_version,
        )
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


class _Format:
    """How one format writes records to ``out``: what comes before them, each record, what
    comes after; :meth:`write` runs them and returns how many records it wrote."""

    def __init__(
        self, out: IO[str], project: Project, fields: list[str], labels: Sequence[str] | None
    ) -> None:
        self.out = out
        self.project = project
        self.fields = fields
        self.labels = labels
        self.multi_label = settings_of(project).multi_label

    @classmethod
    def write(
        cls,
        out: IO[str],
        project: Project,
        records: Iterator[Record],
        fields: list[str],
        labels: Sequence[str] | None,
    ) -> int:
        fmt = cls(out, project, fields, labels)
        fmt.begin()
        count = 0
        for record in records:
            fmt.record(record, count)
            count += 1
        fmt.end()
        return count

    def begin(self) -> None:
        """What comes before the records (nothing unless a format says)."""

    def record(self, record: Record, count: int) -> None:
        """One record, after ``count`` others."""
        raise NotImplementedError

    def end(self) -> None:
        """What comes after the records (nothing unless a format says)."""


class _Csv(_Format):
    def begin(self) -> None:
        content = _content_columns(self.project, self.fields)
        self.columns = ["id", *content, "label", "status", "annotations"]
        added = prediction_columns(self.labels) if self.labels is not None else []
        self.writer = csv.writer(self.out)
        self.writer.writerow([_safe_cell(c) for c in [*self.columns, *added]])

    def record(self, record: Record, count: int) -> None:
        sets = _as_cell if self.multi_label else None
        row = _flat(self.project, record, self.fields, sets)
        cells = [_csv_value(row[c]) for c in self.columns]
        if self.labels is not None:
            cells += _prediction_cells(record.predicted, self.labels, sets)
        self.writer.writerow(cells)


def _prediction_cells(
    predicted: Predicted | None, labels: Sequence[str], sets: _Sets | None = None
) -> list[str]:
    """The CSV cells of :func:`prediction_columns` (a chunk always has its predictions)."""
    assert predicted is not None
    probabilities = predicted.probabilities or {}
    return [
        _csv_value(predicted.label if sets is None else sets(predicted.label)),
        _csv_value(predicted.confidence),
        *(_csv_value(probabilities.get(str(label))) for label in labels),
        _csv_value(predicted.model_version),
    ]


class _Jsonl(_Format):
    def record(self, record: Record, count: int) -> None:
        row = _flat(self.project, record, self.fields, _as_list if self.multi_label else None)
        self.out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _task(project: Project, record: Record, multi_label: bool = False) -> dict[str, Any]:
    to_name = project.kind

    def choices(value: str) -> list[str]:
        return label_sets.decode(value) if multi_label else [value]

    annotations: list[dict[str, Any]] = []
    for answer in record.annotations:
        annotation: dict[str, Any] = {
            "result": [
                {
                    "id": f"lw{len(annotations)}",
                    "type": "choices",
                    "from_name": "label",
                    "to_name": to_name,
                    "value": {"choices": choices(answer["label"])},
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
        "predictions": _task_predictions(record.predicted, to_name, choices),
        "meta": {
            "external_id": ext,
            "label": _as_list(record.label) if multi_label else record.label,
            "status": record.status,
            "annotations": record.annotations,
        },
    }


def _task_predictions(
    predicted: Predicted | None, to_name: str, choices: Callable[[str], list[str]]
) -> list[dict[str, Any]]:
    """Label Studio's ``predictions`` of a task: the served model's, or none (``choices``: the
    labels of a prediction, as :func:`_task` writes an answer's)."""
    if predicted is None:
        return []
    entry: dict[str, Any] = {"model_version": f"v{predicted.model_version}"}
    if predicted.confidence is not None:
        entry["score"] = predicted.confidence
    entry["result"] = [
        {
            "from_name": "label",
            "to_name": to_name,
            "type": "choices",
            "value": {"choices": choices(predicted.label)},
        }
    ]
    return [entry]


class _LabelStudio(_Format):
    def begin(self) -> None:
        self.out.write("[")

    def record(self, record: Record, count: int) -> None:
        self.out.write(",\n" if count else "\n")
        task = _task(self.project, record, self.multi_label)
        self.out.write(json.dumps(task, ensure_ascii=False))

    def end(self) -> None:
        self.out.write("\n]\n")


_Writer = Callable[[IO[str], Project, Iterator[Record], list[str], Sequence[str] | None], int]
WRITERS: dict[str, _Writer] = {
    "csv": _Csv.write,
    "jsonl": _Jsonl.write,
    "label-studio": _LabelStudio.write,
}
