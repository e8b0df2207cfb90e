"""Projects and their settings.

A project has a kind (text, image or tabular), a fixed label set and settings that every process
reads from the database, so a change reaches the server and the worker alike.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labelwise import label_sets
from labelwise.exceptions import InvalidDataError, InvalidParameterError, NotFoundError
from labelwise.features.spec import FeatureSpec, parse_features
from labelwise.models.registry import available_models
from labelwise.store.models import Project
from labelwise.strategies.factory import make_strategy

__all__ = [
    "KINDS",
    "RESERVED_KEYS",
    "SETTING_HELP",
    "ProjectSettings",
    "answer_value",
    "check_label",
    "create_project",
    "feature_spec",
    "get_project",
    "label_keys",
    "setting_change",
    "settings_of",
    "update_settings",
]

KINDS = ("text", "image", "tabular")
GUESS_MODES = ("after", "before", "never")

#: Keys that are commands on the labeling page, never labels: skip, undo, help, the "why"
#: panel, the guidelines, a group's answer, and Enter.
RESERVED_KEYS = frozenset("suzhwgi?")
#: The keys labels get, in order, unless the project chooses its own (``label_keys``).
_KEY_ORDER = [*"1234567890", *(c for c in "abcdefjklmnopqrtvxy" if c not in RESERVED_KEYS)]
#: The longest guidelines text (Markdown).
MAX_GUIDELINES = 100_000

#: What each setting does, in a line: the CLI's ``config``, the settings page and the docs.
SETTING_HELP = {
    "strategy": "How the next items are chosen (labelwise strategies lists them).",
    "model": "The model that learns from the labels (labelwise models lists them).",
    "features": "How items are represented for the model: empty for the kind's default.",
    "retrain_every": "New labels that start the next fit (1 to 1,000,000).",
    "queue_size": "Items ranked per model version (1 to 10,000).",
    "exploration": "Extra share of random items in the queue (0 to 1).",
    "routine": "Share of confident items mixed in for tired annotators (0 to 1).",
    "overlap": "Share of items two annotators label, for agreement figures (0 to 1).",
    "lease_seconds": "How long an item stays reserved for whoever was handed it (5 s to a week).",
    "show_guess": "When annotators see the model's guess: after answering, before, or never.",
    "seed": "Seeds the random choices, so a run can be repeated (0 to 4,294,967,295).",
    "duplicate_similarity": "Similarity from which an open item is offered as a near-duplicate.",
    "max_group": "Most near-duplicates offered with one item (0 to 50; 0: none).",
    "guidelines": "Instructions for annotators (Markdown), shown on the labeling page.",
    "label_help": "A one-line definition per label, shown on its button.",
    "label_keys": "A key per label (one letter or digit); the others get 1 to 9, then 0.",
    "multi_label": "Whether an answer is a set of labels (fixed when the project is made).",
}


#: Integer settings and their bounds: past them a value breaks something (a lease beyond the
#: calendar, a queue of a trillion rows) rather than meaning anything.
_INTEGER_BOUNDS = {
    "retrain_every": (1, 1_000_000),
    "queue_size": (1, 10_000),
    "lease_seconds": (5, 7 * 24 * 3600),
    "seed": (0, 2**32 - 1),
}


@dataclass(frozen=True)
class ProjectSettings:
    """How a project queries, retrains and serves.

    Attributes
    ----------
    strategy : str
        Registry name of the query strategy (``default`` explores 10 % at random itself).
    model : str
        Registry name of the model (see ``labelwise models``).
    retrain_every : int
        New labels that trigger the next fit (1 to 1,000,000).
    queue_size : int
        Items ranked per model version (1 to 10,000).
    exploration, routine : float
        Extra shares of random and of confident items in the queue (on top of any exploration
        the strategy does).
    overlap : float
        Share of imported items that two annotators label (for agreement figures).
    lease_seconds : int
        How long an item stays reserved for the annotator it was handed to (5 s to a week).
    show_guess : {"after", "before", "never"}
        When the annotator sees the model's guess: after answering (default: a guess shown
        before anchors experts), before, or never.
    seed : int
        Seeds the strategy and overlap draws (0 to 2**32 - 1).
    duplicate_similarity : float in (0, 1]
        Cosine similarity from which an open item counts as a near-duplicate of a queued one;
        the annotator may give a group of them the same answer, after confirming.
    max_group : int
        Most near-duplicates offered with one item (0: never offer any).
    features : str or None
        How items are represented (a ``features`` word, see
        :func:`labelwise.features.parse_features`), checked against the project's kind when
        set; None: the kind's default. A change takes effect at the next fit (embeddings the
        project lacks are computed then).
    guidelines : str
        Labeling instructions in Markdown (rendered without raw HTML), at most 100,000
        characters.
    label_help : dict of str to str
        A one-line definition per label (at most 200 printable characters).
    label_keys : dict of str to str
        A keyboard key per label: one lowercase letter or digit, not a command key
        (:data:`RESERVED_KEYS`), each used once. Labels without one get the first free of
        1-9, 0, then letters.
    multi_label : bool
        Whether an answer is a set of the labels, possibly empty, rather than one label
        (:mod:`labelwise.label_sets`). Fixed when the project is made.
    """

    strategy: str = "default"
    model: str = "logreg"
    retrain_every: int = 20
    queue_size: int = 100
    exploration: float = 0.0
    routine: float = 0.05
    overlap: float = 0.1
    lease_seconds: int = 600
    show_guess: str = "after"
    seed: int = 0
    duplicate_similarity: float = 0.9
    max_group: int = 20
    features: str | None = None
    guidelines: str = ""
    label_help: dict[str, str] = field(default_factory=dict)
    label_keys: dict[str, str] = field(default_factory=dict)
    multi_label: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.multi_label, bool):
            raise InvalidParameterError(
                f"multi_label must be true or false, got {self.multi_label!r}"
            )
        make_strategy(self.strategy, multi_label=self.multi_label)
        if self.model not in available_models():
            raise InvalidParameterError(
                f"unknown model {self.model!r}; expected one of {', '.join(available_models())}"
            )
        for name, (low, high) in _INTEGER_BOUNDS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise InvalidParameterError(
                    f"{name} must be an integer from {low:,} to {high:,}, got {value!r}"
                )
        for name in ("exploration", "routine", "overlap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidParameterError(f"{name} must be a fraction in [0, 1], got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise InvalidParameterError(f"{name} must be a fraction in [0, 1], got {value!r}")
        sim = self.duplicate_similarity
        if isinstance(sim, bool) or not isinstance(sim, (int, float)) or not 0.0 < sim <= 1.0:
            raise InvalidParameterError(f"duplicate_similarity must be in (0, 1], got {sim!r}")
        if (
            not isinstance(self.max_group, int)
            or isinstance(self.max_group, bool)
            or not (0 <= self.max_group <= 50)
        ):
            raise InvalidParameterError(
                f"max_group must be an integer from 0 to 50, got {self.max_group!r}"
            )
        if self.exploration + self.routine > 1.0:
            raise InvalidParameterError("exploration + routine must be at most 1")
        if self.features is not None and (
            not isinstance(self.features, str) or not self.features.strip()
        ):
            raise InvalidParameterError(
                f"features must be a word such as auto, got {self.features!r}"
            )
        if self.show_guess not in GUESS_MODES:
            raise InvalidParameterError(
                f"show_guess must be one of {', '.join(GUESS_MODES)}, got {self.show_guess!r}"
            )
        if not isinstance(self.guidelines, str) or len(self.guidelines) > MAX_GUIDELINES:
            raise InvalidParameterError(
                f"guidelines must be text of at most {MAX_GUIDELINES:,} characters"
            )
        for name in ("label_help", "label_keys"):
            value = getattr(self, name)
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise InvalidParameterError(f"{name} must map labels to text, got {value!r}")
        for label, text in self.label_help.items():
            if len(text) > 200 or not text.isprintable():
                raise InvalidParameterError(
                    f"the definition of {label!r} must be one line of at most 200 characters"
                )
        keys = [key.lower() for key in self.label_keys.values()]
        for label, key in self.label_keys.items():
            if len(key) != 1 or not key.isascii() or not key.isalnum():
                raise InvalidParameterError(
                    f"the key of {label!r} must be one letter or digit, got {key!r}"
                )
            if key.lower() in RESERVED_KEYS:
                raise InvalidParameterError(
                    f"{key!r} is a command key ({' '.join(sorted(RESERVED_KEYS))}); "
                    f"choose another for {label!r}"
                )
            if keys.count(key.lower()) > 1:
                raise InvalidParameterError(f"the key {key!r} is given to more than one label")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProjectSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidParameterError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check_labels(self, labels: list[str]) -> None:
        """Refuse definitions or keys of labels the project does not have."""
        for name in ("label_help", "label_keys"):
            unknown = sorted(set(getattr(self, name)) - set(labels))
            if unknown:
                raise InvalidParameterError(
                    f"{name} names {', '.join(map(repr, unknown))}, not labels of this project "
                    f"({', '.join(labels)})"
                )


def setting_change(settings: ProjectSettings, key: str, text: str) -> dict[str, Any]:
    """The change that sets ``key`` to a value given as text (a command line's word).

    Numbers are read as numbers; ``features`` empty means the kind's default; a definition or a
    key of one label is ``label_help.LABEL`` / ``label_keys.LABEL`` (empty text removes it).
    """
    name, _, entry = key.partition(".")
    kinds = {f.name: f.type for f in fields(ProjectSettings)}
    if name not in kinds:
        raise InvalidParameterError(f"unknown setting {name!r}; known: {', '.join(sorted(kinds))}")
    current = getattr(settings, name)
    if isinstance(current, dict):
        if not entry:
            raise InvalidParameterError(f"set {name} one label at a time: {name}.LABEL VALUE")
        updated = dict(current)
        if text:
            updated[entry] = text
        else:
            updated.pop(entry, None)
        return {name: updated}
    if entry:
        raise InvalidParameterError(f"{name} has no parts: set it as {name} VALUE")
    if name == "features":
        return {name: text.strip() or None}
    if isinstance(current, str):
        return {name: text}
    if isinstance(current, bool):
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if text.strip().lower() not in words:
            raise InvalidParameterError(f"{name} must be true or false, got {text!r}")
        return {name: words[text.strip().lower()]}
    try:
        value: int | float = int(text) if isinstance(current, int) else float(text)
    except ValueError:
        kind = "an integer" if isinstance(current, int) else "a number"
        raise InvalidParameterError(f"{name} must be {kind}, got {text!r}") from None
    return {name: value}


def check_label(project: Project, value: str | None) -> None:
    """An answer must be one of the project's labels, or in a multi-label project the canonical
    string of a set of them (:func:`labelwise.label_sets.encode`):
    :class:`InvalidParameterError` if not."""
    if settings_of(project).multi_label:
        if value is None or label_sets.encode(label_sets.decode(value), project.label_set) != value:
            raise InvalidParameterError(
                f"{value!r} is not a set of this project's labels in the form "
                f"{label_sets.SEPARATOR.join(project.label_set[:2])!r} (labels in project order, "
                f"joined by {label_sets.SEPARATOR!r}; empty for none); expected some of "
                f"{', '.join(project.label_set)}"
            )
        return
    if value not in project.label_set:
        raise InvalidParameterError(
            f"{value!r} is not a label of this project; expected one of "
            f"{', '.join(project.label_set)}"
        )


def answer_value(project: Project, answer: Any) -> str:
    """The stored form of an answer as a person or a file gives it: one label, or in a
    multi-label project a set of labels (a list, a JSON list or names joined by ``;``), checked
    (:class:`InvalidParameterError` naming what is wrong)."""
    if settings_of(project).multi_label:
        try:
            names = label_sets.parse_label_list(answer, what="the answer")
        except InvalidDataError as exc:
            raise InvalidParameterError(str(exc)) from None
        return label_sets.encode(names, project.label_set)
    if not isinstance(answer, str):
        raise InvalidParameterError(
            f"this project takes one label per answer, got {answer!r}; expected one of "
            f"{', '.join(project.label_set)}"
        )
    check_label(project, answer)
    return answer


def label_keys(labels: list[str], chosen: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """A keyboard key per label, in label order (labels beyond the keys get none): the
    project's own choice (``label_keys``), else the first free of 1-9, 0, then letters that
    are not commands."""
    keys = {label: key.lower() for label, key in (chosen or {}).items() if label in labels}
    free = iter([k for k in _KEY_ORDER if k not in set(keys.values())])
    for label in labels:
        if label not in keys:
            spare = next(free, None)
            if spare is None:
                break
            keys[label] = spare
    return [(keys[label], label) for label in labels if label in keys]


def _check_labels(labels: list[str]) -> list[str]:
    cleaned = [str(label).strip() for label in labels]
    if len(cleaned) < 2:
        raise InvalidParameterError(f"a project needs at least two labels, got {cleaned!r}")
    if any(not label for label in cleaned):
        raise InvalidParameterError("labels must not be empty")
    if len(set(cleaned)) != len(cleaned):
        raise InvalidParameterError(f"labels must be unique, got {cleaned!r}")
    if any(len(label) > 200 for label in cleaned):
        raise InvalidParameterError("labels must be at most 200 characters")
    return cleaned


def create_project(
    session: Session,
    *,
    name: str,
    kind: str,
    labels: list[str],
    settings: ProjectSettings | None = None,
) -> Project:
    """Add a project; its name must be new."""
    if kind not in KINDS:
        raise InvalidParameterError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidParameterError("project name must be 1 to 200 characters")
    if session.scalar(select(Project.id).where(Project.name == name)) is not None:
        raise InvalidParameterError(f"a project named {name!r} already exists")
    settings = _with_features(kind, settings or ProjectSettings())
    labels = _check_labels(labels)
    settings.check_labels(labels)
    if settings.multi_label:
        label_sets.check_label_names(labels)
    project = Project(
        name=name,
        kind=kind,
        label_set=labels,
        settings=settings.to_dict(),
    )
    session.add(project)
    session.flush()
    return project


def get_project(
    session: Session, *, project_id: int | None = None, name: str | None = None
) -> Project:
    """A project by id or by name, or :class:`NotFoundError`."""
    stmt = select(Project)
    stmt = (
        stmt.where(Project.id == project_id)
        if project_id is not None
        else stmt.where(Project.name == name)
    )
    project = session.scalar(stmt)
    if project is None:
        raise NotFoundError(f"no project {project_id if project_id is not None else name!r}")
    return project


def _with_features(kind: str, settings: ProjectSettings) -> ProjectSettings:
    """``settings`` with ``features`` checked against ``kind`` and in its canonical spelling."""
    if settings.features is None:
        return settings
    return replace(settings, features=parse_features(kind, settings.features).name)


def feature_spec(project: Project) -> FeatureSpec:
    """How the project's items are represented now (its setting, or the kind's default)."""
    return parse_features(project.kind, settings_of(project).features)


def settings_of(project: Project) -> ProjectSettings:
    """The project's settings, checked (and remembered: every request reads them)."""
    return _settings_from_json(json.dumps(project.settings or {}, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _settings_from_json(text: str) -> ProjectSettings:
    return ProjectSettings.from_dict(json.loads(text))


def update_settings(session: Session, project: Project, changes: dict[str, Any]) -> ProjectSettings:
    """Apply ``changes`` (validated as a whole) to the project's settings."""
    current = settings_of(project)
    if "multi_label" in changes and changes["multi_label"] != current.multi_label:
        raise InvalidParameterError(
            "multi_label is fixed when a project is made: make a new project "
            "(labelwise init --multi-label) and import its items"
        )
    merged = {**current.to_dict(), **changes}
    settings = _with_features(project.kind, ProjectSettings.from_dict(merged))
    settings.check_labels(project.label_set)
    project.settings = settings.to_dict()
    session.flush()
    return settings
