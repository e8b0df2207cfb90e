"""Reading Label Studio JSON exports as a :class:`~labelwise.io.load.Dataset`.

A Label Studio file is a ``.json`` file whose top level is a list of tasks, objects with a
``data`` object::

    [{"id": 1, "data": {"text": "Win a cruise!"},
      "annotations": [{"result": [{"type": "choices", "value": {"choices": ["spam"]},
                                   "from_name": "label", "to_name": "text"}]}]}]

A task's ``id`` is its external id (else its position in the list). The text is under
``text_column``, else ``text``, else the task's only string field; an image is under
``image_column``, else ``image``. Images are local files only, given relative to the JSON file's
folder: URLs (``http://``, ``s3://``, ``data:``...), absolute paths and paths that leave that
folder are refused, never fetched. The first annotation not cancelled gives the label (its
``choices``; ``label_column`` picks the ``from_name`` when the tasks hold several).

A multi-label project's file (``multi_label``) is read with Label Studio's multi-choice
(``choice="multiple"``): the annotation's ``choices`` are the item's set of labels, joined by
``;`` as :func:`labelwise.io.load.load_dataset` gives label lists; a ``choices`` result with an
empty list is the empty set (``""``), an annotation without a ``choices`` result no label.
Other result types (``taxonomy``, regions) are not read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from labelwise import label_sets
from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.io import load as _data
from labelwise.io.load import Dataset
from labelwise.io.media import _read_images

__all__ = ["label_studio_tasks", "read_label_studio"]

# A scheme ("http:", "s3:", "data:", "file:") or a Windows drive ("C:"): never a local relative
# path, and never fetched.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def label_studio_tasks(path: Path) -> list[Any] | None:
    """The parsed task list when ``path`` is Label Studio JSON, else None (not a .json file, not
    valid JSON, or records without a ``data`` object: :func:`load_dataset` reports those)."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    try:
        parsed = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if (
        isinstance(parsed, list)
        and parsed
        and isinstance(parsed[0], dict)
        and isinstance(parsed[0].get("data"), dict)
    ):
        return parsed
    return None


def read_label_studio(
    path: str | Path,
    tasks: Sequence[Any] | None = None,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    kind: str | None = None,
    annotations: bool = True,
    multi_label: bool = False,
) -> Dataset:
    """A :class:`Dataset` of text or image items from a Label Studio JSON task list.

    ``tasks`` is the parsed list when the caller has it already (else ``path`` is read).
    ``multi_label``: an annotation's choices are a set of labels (see the module docstring). Every
    problem is an :class:`InvalidDataError` naming the file and the task (its ``id`` and its
    0-based position in the list); nothing is fetched from the network.
    """
    path = Path(path)
    if tasks is None:
        tasks = label_studio_tasks(path)
        if tasks is None:
            raise InvalidDataError(
                f"{path} is not Label Studio JSON: expected a list of tasks with a 'data' object"
            )
    if text_column is not None and image_column is not None:
        raise InvalidParameterError("give text_column or image_column, not both")
    if kind == "tabular":
        raise InvalidDataError(
            f"{path.name} holds Label Studio tasks (text or images), but the project is a "
            "tabular project"
        )
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise InvalidDataError(
                f"{path.name}, task #{i}: expected an object with a 'data' object"
            )
    item_kind, key = _content_key(path, tasks, text_column, image_column, kind)
    ids = np.empty(len(tasks), dtype=object)
    values = np.empty(len(tasks), dtype=object)
    labels = np.full(len(tasks), None, dtype=object)
    for i, task in enumerate(tasks):
        ids[i] = _task_id(path, task, i)
        where = f"{path.name}, task {ids[i]!r} (#{i})"
        value = task["data"].get(key)
        if not isinstance(value, str) or not value.strip():
            raise InvalidDataError(f"{where}: data.{key} must be a non-empty string, got {value!r}")
        values[i] = value
        if annotations:
            labels[i] = _task_label(task, label_column, where, multi_label)
    y = labels if any(v is not None for v in labels) else None
    if item_kind == "text":
        return Dataset("text", values, y, ids, (key,), str(path))
    base = path.parent.resolve()
    files = [
        _local_image(value, base, f"{path.name}, task {ids[i]!r} (#{i})")
        for i, value in enumerate(values)
    ]
    # The module attribute is read at each call: labelwise.io.load is the one place to change it.
    items = _read_images(files, max_pixels=_data._MAX_IMAGE_PIXELS)
    return Dataset("image", items, y, ids, (), str(path))


def _content_key(
    path: Path,
    tasks: Sequence[dict[str, Any]],
    text_column: str | None,
    image_column: str | None,
    kind: str | None,
) -> tuple[str, str]:
    """(item kind, data key) for the whole file."""
    if image_column is not None:
        return "image", image_column
    if text_column is not None:
        return "text", text_column
    first = tasks[0]["data"]
    if kind == "image" or (kind is None and "image" in first and "text" not in first):
        if "image" in first:
            return "image", "image"
        if "text" in first:
            raise InvalidDataError(
                f"{path.name} holds text tasks (data.text), but the project is an image project"
            )
    elif "text" in first:
        return "text", "text"
    elif kind == "text" and "image" in first:
        raise InvalidDataError(
            f"{path.name} holds image tasks (data.image), but the project is a text project"
        )
    strings = [k for k in first if all(isinstance(t["data"].get(k), str) for t in tasks)]
    role = "image_column" if kind == "image" else "text_column"
    if len(strings) != 1:
        raise InvalidDataError(
            f"{path.name}: cannot tell which data field holds the "
            f"{'image' if kind == 'image' else 'text'} (string fields in every task: "
            f"{', '.join(map(repr, strings)) or 'none'}); name it with {role}="
        )
    return ("image" if kind == "image" else "text"), strings[0]


def _task_id(path: Path, task: dict[str, Any], i: int) -> str:
    value = task.get("id")
    if value is None:
        return str(i)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidDataError(
            f"{path.name}, task #{i}: id must be an integer or a string, got {value!r}"
        )
    return str(value)


def _task_label(
    task: dict[str, Any], from_name: str | None, where: str, multi_label: bool = False
) -> str | None:
    """The choice of the first annotation not cancelled (None when it chose nothing); with
    ``multi_label`` its choices joined by ``;`` (``""`` for a ``choices`` result chose none)."""
    found = task.get("annotations", task.get("completions")) or []
    if not isinstance(found, list):
        raise InvalidDataError(f"{where}: annotations must be a list")
    for annotation in found:
        if not isinstance(annotation, dict):
            raise InvalidDataError(f"{where}: each annotation must be an object")
        if annotation.get("was_cancelled"):
            continue
        result = annotation.get("result") or []
        if not isinstance(result, list):
            raise InvalidDataError(f"{where}: an annotation's result must be a list")
        chosen: dict[str, None] = {}  # ordered set
        names: set[str] = set()
        found_choices = False
        for region in result:
            if not isinstance(region, dict) or region.get("type") != "choices":
                continue
            if from_name is not None and region.get("from_name") != from_name:
                continue
            value = region.get("value")
            choices = value.get("choices") if isinstance(value, dict) else None
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise InvalidDataError(f"{where}: value.choices must be a list of strings")
            names.add(str(region.get("from_name")))
            chosen.update(dict.fromkeys(c.strip() for c in choices if c.strip()))
            found_choices = True
        pick = (
            f"; the choices come from {', '.join(sorted(names))}: pick one with label_column="
            if len(names) > 1
            else ""
        )
        if multi_label:
            if pick:
                raise InvalidDataError(f"{where}: {pick[2:]}")
            return label_sets.SEPARATOR.join(chosen) if found_choices else None
        if len(chosen) > 1:
            hint = pick or (
                " (a project whose answers are sets of labels takes several: make it with "
                "--multi-label)"
            )
            raise InvalidDataError(
                f"{where}: the annotation chooses {', '.join(map(repr, chosen))}, but an item "
                f"takes one label{hint}"
            )
        return next(iter(chosen), None) or None
    return None


def _local_image(value: str, base: Path, where: str) -> Path:
    """``base / value`` when it is a file inside ``base``; URLs and escapes are refused."""
    if _SCHEME.match(value):
        raise InvalidDataError(
            f"{where}: image {value[:80]!r} is a URL; Labelwise never fetches URLs. Put the "
            f"image files in {base} (or below it) and give their paths relative to that folder"
        )
    if "\0" in value or value.startswith(("/", "\\")) or PureWindowsPath(value).is_absolute():
        raise InvalidDataError(
            f"{where}: image {value[:80]!r} is an absolute path; give a path relative to {base}"
        )
    target = (base / value).resolve()
    if not target.is_relative_to(base):
        raise InvalidDataError(f"{where}: image {value[:80]!r} leaves the folder {base}")
    if not target.is_file():
        raise InvalidDataError(f"{where}: no such image file {value!r} in {base}")
    return target
