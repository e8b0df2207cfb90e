"""Bringing back the answers a Labelwise export carries, so that export then import round-trips.

An export (:mod:`labelwise.services.export`, any of its formats) holds, for each item, every
standing answer: who gave it, the label, whether it was an answer, an adjudication or triage's
automatic decision, how long it took and when. Importing such a file with ``with_labels``
restores those answers as they were, rather than recording the resolved label once under the
``import`` annotator:

- each answer becomes a label row of the annotator of that name: the project's own, else a new
  one kept for attribution only (disabled, with no usable token; an admin if they adjudicated);
- its duration and time are kept (times to the millisecond, as exported), its reason is
  ``import``; the answers of one item keep their order;
- triage's automatic decisions become accepted decisions of an ``import`` batch.

Who is who: within a project a name is one person. Imported into an existing project
(``labelwise import``), an answer whose annotator has the name of one of the project's own is
theirs (an export brought back into its project, or into a copy whose people were made with the
same names); every other name is restored as above, never matched to anyone else. A new project
(``labelwise init --data EXPORT --with-labels``, :func:`labelwise.services.setup.init_project`)
has nobody yet, so all its exported people are restored that way, ``admin`` included -- the
first admin of the exported project, say. The account ``init`` then makes for whoever runs it is
a person of its own: it is ``admin``, or ``admin-2`` (the first free ``admin-N``) when the export
brought an ``admin`` back, since who runs ``init`` need not be who answered in the export. Their
answers are never handed to the new token; the exported admin's keep their attribution and
history. Whoever is that person takes the restored account over explicitly:
``labelwise token PROJECT --name admin --reissue --role admin``
(:func:`~labelwise.store.annotators.reissue_token`) gives it a working token, its answers still
its own.

Columns an export adds after ``annotations`` (a predictions export's ``prediction``,
``confidence``, ``p_<label>``, ``probabilities``, ``model_version``) are no data:
:func:`added_columns` names them, so that an import never takes them for a tabular item's
fields; they are never a label either.

A multi-label project's answers are label sets: an export writes each answer's ``label`` as its
stored form, the canonical string (``"insult;threat"``, ``""`` for the empty set; see
:mod:`labelwise.label_sets`), and a list of names is read as well; each is checked against the
project's labels and stored canonically (:func:`~labelwise.store.projects.answer_value`).

"Exactly" therefore means what the export carries: exporting the restored project gives the
same records, field by field (tested in ``tests/reliability/test_data_safety.py``). Not carried,
so not restored: superseded answers (undone or relabeled), skips, leases, queues, model versions,
items routed by triage and the audit flag of an automatic decision, item metadata, and the
annotators' roles and tokens.
"""

from __future__ import annotations

import csv
import json
import math
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from labelwise import label_sets
from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.store.annotators import IMPORT_ANNOTATOR, hash_token, system_annotator
from labelwise.store.models import Annotator, Item, Label, Project, TriageDecision, utcnow
from labelwise.store.projects import answer_value, settings_of

__all__ = [
    "Answer",
    "added_columns",
    "answer_labels",
    "check_answers",
    "read_answers",
    "restore_answers",
]

ACTIONS = ("label", "adjudicate", "automatic")
#: The columns (keys) that mark a file as a Labelwise export.
_MARKERS = frozenset({"id", "status", "annotations"})
_CHUNK = 900  # ids per IN list, under SQLite's bound-parameter limit


@dataclass(frozen=True)
class Answer:
    """One standing answer of an exported item.

    Attributes
    ----------
    annotator : str
        Who answered (``triage`` for an automatic decision).
    label : str
        The label; for a set of labels (a multi-label project's answer) its names joined by
        ``;`` as the file gives them (``""`` for the empty set).
    action : {"label", "adjudicate", "automatic"}
    duration_ms : int or None
        Time spent, in milliseconds (None when unknown).
    created_at : datetime or None
        When, as naive UTC (None when the file does not say).
    confidence : float or None
        The calibrated confidence of an automatic decision.
    """

    annotator: str
    label: str
    action: str
    duration_ms: int | None = None
    created_at: datetime | None = None
    confidence: float | None = None


# ------------------------------------------------------------------------------------ reading


def read_answers(path: str | Path) -> dict[str, list[Answer]] | None:
    """Each item's answers, by external id, when ``path`` is a Labelwise export; else None.

    A CSV or JSONL file is an export when it has the ``id``, ``status`` and ``annotations``
    columns (in its header, or its first record); a Label Studio file when its tasks carry
    ``meta.annotations``. Other files are recognised from their first line, not read through.
    Anything malformed in an export is an :class:`InvalidDataError` naming the row and what
    was wrong.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
        return None
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            if suffix == ".csv":
                rows = _csv_rows(fh, path.name)
            elif suffix == ".json":
                rows = _label_studio_rows(fh.read())
            else:
                rows = _jsonl_rows(fh, path.name)
    except UnicodeDecodeError:
        return None  # not written by an export: the data's readers say what is wrong with it
    if rows is None:
        return None
    answers: dict[str, list[Answer]] = {}
    for where, external_id, raw in rows:
        if external_id in answers:
            raise InvalidDataError(f"{path.name}, {where}: id {external_id!r} appears twice")
        answers[external_id] = _parse(raw, f"{path.name}, {where} (id {external_id!r})")
    return answers


def added_columns(path: str | Path) -> tuple[str, ...]:
    """The columns a Labelwise export added after ``annotations``, in order, when ``path`` is
    a CSV or JSONL export (its header, or its first record); else none.

    What follows the answers in an export is never data (:mod:`labelwise.services.export`: the
    predictions' ``prediction``, ``confidence``, ``p_<label>``, ``model_version``, ...); an
    import leaves these columns out of a tabular item's fields.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in (".csv", ".jsonl", ".ndjson"):
        return ()
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            if suffix == ".csv":
                names = next(csv.reader(fh), [])
            else:
                first = next((line for line in fh if line.strip()), "")
                record = json.loads(first) if first else None
                names = list(record) if isinstance(record, dict) else []
    except (UnicodeDecodeError, ValueError, RecursionError, csv.Error):
        return ()  # not an export: the data's readers say what is wrong with the file
    if not set(names) >= _MARKERS:
        return ()
    return tuple(names[names.index("annotations") + 1 :])


_Row = tuple[str, str, Any]


def _csv_rows(lines: Iterable[str], name: str) -> list[_Row] | None:
    reader = csv.DictReader(lines)
    try:
        if not set(reader.fieldnames or ()) >= _MARKERS:
            return None
        out = []
        for number, row in enumerate(reader):
            cell = row.get("annotations") or ""
            try:
                given = json.loads(cell) if cell.strip() else []
            except (ValueError, RecursionError):
                raise InvalidDataError(
                    f"{name}, row {number}: annotations {cell[:60]!r} are not valid JSON"
                ) from None
            out.append((f"row {number}", str(row["id"]), given))
    except csv.Error as exc:
        raise InvalidDataError(f"cannot parse {name}: {exc}") from None
    return out


def _jsonl_rows(lines: Iterable[str], name: str) -> list[_Row] | None:
    out: list[_Row] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            if not out:
                return None  # not an export: reading the data reports the problem
            raise InvalidDataError(f"{name}, line {number}: invalid JSON") from None
        if not isinstance(record, dict) or not record.keys() >= _MARKERS:
            if not out:
                return None
            raise InvalidDataError(
                f"{name}, line {number}: expected the keys {', '.join(sorted(_MARKERS))} of "
                "an export, as on the lines before"
            )
        out.append((f"line {number}", _id_text(record["id"]), record["annotations"]))
    return out or None


def _label_studio_rows(text: str) -> list[_Row] | None:
    try:
        tasks = json.loads(text)
    except (ValueError, RecursionError):
        return None  # not an export: reading the data reports the problem
    if not isinstance(tasks, list) or not tasks:
        return None
    out = []
    for number, task in enumerate(tasks):
        meta = task.get("meta") if isinstance(task, dict) else None
        if not isinstance(meta, dict) or "annotations" not in meta:
            return None
        # The id as labelwise.services.label_studio reads it: the task's id, else its position.
        task_id = task.get("id")
        external_id = str(number) if task_id is None else _id_text(task_id)
        out.append((f"task #{number}", external_id, meta["annotations"]))
    return out


def _id_text(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _parse(raw: Any, where: str) -> list[Answer]:
    if not isinstance(raw, list):
        raise InvalidDataError(f"{where}: annotations must be a list, got {type(raw).__name__}")
    answers = [_answer(entry, f"{where}, answer {k}") for k, entry in enumerate(raw)]
    seen: set[tuple[str, str]] = set()
    for answer in answers:
        key = (answer.annotator, answer.action)
        if key in seen:
            raise InvalidDataError(
                f"{where}: {answer.annotator!r} has two standing answers ({answer.action})"
            )
        seen.add(key)
    if sum(a.action == "adjudicate" for a in answers) > 1:
        raise InvalidDataError(f"{where}: more than one adjudication")
    if any(a.action == "automatic" for a in answers) and len(answers) > 1:
        raise InvalidDataError(f"{where}: an automatic decision stands only on an unanswered item")
    return answers


def _answer(entry: Any, where: str) -> Answer:
    if not isinstance(entry, dict):
        raise InvalidDataError(f"{where}: expected an object, got {type(entry).__name__}")
    annotator, label, action = entry.get("annotator"), entry.get("label"), entry.get("action")
    if not isinstance(annotator, str) or not annotator.strip() or len(annotator) > 100:
        raise InvalidDataError(f"{where}: annotator must be a name of 1 to 100 characters")
    if not annotator.isprintable():
        raise InvalidDataError(f"{where}: annotator {annotator!r} holds a control character")
    if isinstance(label, list) and all(isinstance(name, str) for name in label):
        label = label_sets.SEPARATOR.join(label)  # a set of labels, checked by check_answers
    if not isinstance(label, str) or not all(
        len(name) <= 200 for name in label.split(label_sets.SEPARATOR)
    ):
        raise InvalidDataError(
            f"{where}: label must be text of at most 200 characters, or a list of such labels"
        )
    if action not in ACTIONS:
        raise InvalidDataError(f"{where}: action must be one of {', '.join(ACTIONS)}")
    duration = entry.get("duration_ms")
    if duration is not None and (
        not isinstance(duration, int) or isinstance(duration, bool) or duration < 0
    ):
        raise InvalidDataError(f"{where}: duration_ms must be a non-negative integer or null")
    confidence = entry.get("confidence")
    if action == "automatic":
        if (
            not isinstance(confidence, (int, float))
            or isinstance(confidence, bool)
            or not math.isfinite(confidence)
            or not 0 <= confidence <= 1
        ):
            raise InvalidDataError(f"{where}: an automatic decision needs a confidence in [0, 1]")
        confidence = float(confidence)
    else:
        confidence = None
    return Answer(
        annotator.strip(),
        label,
        str(action),
        duration,
        _moment(entry.get("created_at"), where),
        confidence,
    )


def _moment(value: Any, where: str) -> datetime | None:
    """An ISO 8601 time as naive UTC (a time without a zone is taken as UTC)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidDataError(
            f"{where}: created_at {str(value)[:40]!r} is not an ISO 8601 time"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def answer_labels(answers: dict[str, list[Answer]], *, multi_label: bool = False) -> set[str]:
    """Every label the answers use (for a label set inferred from the file); with
    ``multi_label``, every label of their sets."""
    if multi_label:
        return {
            name
            for given in answers.values()
            for a in given
            for name in label_sets.parse_label_list(a.label)
        }
    return {a.label for given in answers.values() for a in given}


# ------------------------------------------------------------------------------------ storing


def check_answers(answers: dict[str, list[Answer]], project: Project, name: str) -> None:
    """Every answer's label belongs to the project (checked before anything is stored)."""
    multi = settings_of(project).multi_label
    for external_id, given in answers.items():
        for answer in given:
            _stored(project, answer, f"{name}, id {external_id!r}", multi)


def _stored(project: Project, answer: Answer, where: str, multi: bool) -> str:
    """The stored form of ``answer``'s label: one of the project's labels, or in a multi-label
    project the canonical string of its set; :class:`InvalidDataError` naming it if not."""
    if multi:
        try:
            return answer_value(project, answer.label)
        except InvalidParameterError as exc:
            raise InvalidDataError(f"{where}: {answer.annotator}'s label: {exc}") from None
    if answer.label not in project.label_set:
        parts = set(answer.label.split(label_sets.SEPARATOR))
        hint = (
            "; this project takes one label per answer (a project whose answers are sets of "
            "labels is made with --multi-label)"
            if len(parts) > 1 and parts <= set(project.label_set)
            else ""
        )
        raise InvalidDataError(
            f"{where}: {answer.annotator}'s label {answer.label!r} is not one of the project's "
            f"labels ({', '.join(project.label_set)}){hint}"
        )
    return answer.label


def restore_answers(
    session: Session, project: Project, answers: dict[str, list[Answer]], name: str
) -> int:
    """Store ``answers`` for items of ``project`` (by external id) in the caller's transaction.

    Meant for items just added by the same import: they have no labels yet. Returns how many
    answers were stored (automatic decisions included).
    """
    check_answers(answers, project, name)
    wanted = [ext for ext, given in answers.items() if given]
    items = {item.external_id: item for item in _items(session, project, wanted)}
    missing = [ext for ext in wanted if ext not in items]
    if missing:
        raise InvalidDataError(f"{name}: no item {missing[0]!r} for its answers")
    people = _annotators(session, project, answers.values())
    multi = settings_of(project).multi_label
    rows, decisions = [], []
    for ext in wanted:
        item = items[ext]
        for answer in answers[ext]:
            moment = answer.created_at or utcnow()
            value = _stored(project, answer, f"{name}, id {ext!r}", multi)
            if answer.action == "automatic":
                decisions.append(
                    {
                        "project_id": project.id,
                        "item_id": item.id,
                        "batch": "import",
                        "accepted": True,
                        "audit": False,
                        "label": value,
                        "confidence": answer.confidence,
                        "policy": {"source": name},
                        "created_at": moment,
                    }
                )
                continue
            rows.append(
                {
                    "project_id": project.id,
                    "item_id": item.id,
                    "annotator_id": people[answer.annotator].id,
                    "action": answer.action,
                    "value": value,
                    "duration_ms": answer.duration_ms,
                    "reason_kind": "import",
                    "is_current": True,
                    "created_at": moment,
                }
            )
        # As labelwise.store.answers counts them: answers (not adjudications) toward the
        # target; a decided item needs no human answer (as labelwise.services.triage leaves it).
        item.n_labels = sum(a.action == "label" for a in answers[ext])
        if any(a.action == "automatic" for a in answers[ext]):
            item.target = 0
        item.done = item.n_labels >= item.target
    if rows:
        session.execute(insert(Label), rows)
    if decisions:
        session.execute(insert(TriageDecision), decisions)
    session.flush()
    return len(rows) + len(decisions)


def _items(session: Session, project: Project, ids: Sequence[str]) -> Iterator[Item]:
    for start in range(0, len(ids), _CHUNK):
        yield from session.scalars(
            select(Item).where(
                Item.project_id == project.id,
                Item.external_id.in_(list(ids[start : start + _CHUNK])),
            )
        )


def _annotators(
    session: Session, project: Project, answers: Iterable[list[Answer]]
) -> dict[str, Annotator]:
    """The project's annotator for every name that answered, made where missing."""
    adjudicators: set[str] = set()
    names: set[str] = set()
    for given in answers:
        for answer in given:
            if answer.action != "automatic":
                names.add(answer.annotator)
                if answer.action == "adjudicate":
                    adjudicators.add(answer.annotator)
    ordered = sorted(names)
    found: dict[str, Annotator] = {}
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        found.update(
            (a.name, a)
            for a in session.scalars(
                select(Annotator).where(
                    Annotator.project_id == project.id, Annotator.name.in_(chunk)
                )
            )
        )
    for person in [name for name in ordered if name not in found]:
        if person == IMPORT_ANNOTATOR:
            found[person] = system_annotator(session, project)
            continue
        annotator = Annotator(
            project_id=project.id,
            name=person,
            role="admin" if person in adjudicators else "annotator",
            token_hash=hash_token(secrets.token_hex(32)),  # a token nobody holds
            token_hint="",
            disabled=True,
        )
        session.add(annotator)
        found[person] = annotator
    session.flush()
    return found
