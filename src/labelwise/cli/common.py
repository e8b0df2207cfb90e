"""What every ``labelwise`` command shares: errors as one line, data warnings, progress bars,
the parsing of list options, and the options several commands take.

Every deliberate error (:class:`~labelwise.exceptions.LabelwiseError`) ends a command with one
line on stderr and exit status 2 (:func:`errors_to_exit`); nothing prints tracebacks on bad
input. Messages the library words for Python callers (``label_column=``) name the command's
flags instead (``--label-column``): see :func:`_cli_text`. What the data import finds
suspicious (:class:`~labelwise.exceptions.DataWarning`) is one ``warning:`` line each on stderr
(:func:`_data_warnings`).
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_type_hints

import typer

from labelwise.exceptions import DataWarning, InvalidParameterError, LabelwiseError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _flags(command: Callable[..., Any]) -> dict[str, str]:
    """A command's options by Python name: ``{"label_column": "--label-column", ...}``."""
    from typer.models import OptionInfo

    try:
        hints = get_type_hints(command, include_extras=True)
    except (NameError, TypeError):
        return {}
    flags = {}
    for name, hint in hints.items():
        for info in get_args(hint)[1:]:
            if isinstance(info, OptionInfo):
                decls = [d for d in (info.param_decls or ()) if d.startswith("--")]
                flags[name] = decls[0].split("/")[0] if decls else "--" + name.replace("_", "-")
    return flags


def _cli_text(message: str, flags: dict[str, str]) -> str:
    """``message`` with the parameters it names as a Python caller passes them
    (``label_column``, ``label_column=``, ``labels=[...]``) named as the command's flags.

    A name with an underscore is code wherever it stands; a plain word (``labels``) only when
    ``=`` follows it. A quoted name (a column called ``'label_column'``) stays as it is, and so
    does a parameter the command has no flag for.
    """
    for name, flag in flags.items():
        value = r"(?:=(?:\[\.\.\.\]|\.\.\.)?)" + ("?" if "_" in name else "")
        message = re.sub(rf"(?<![\w'\"-]){re.escape(name)}{value}(?![\w'\"])", flag, message)
    return message


@contextlib.contextmanager
def _data_warnings(command: Callable[..., Any]) -> Iterator[None]:
    """Print each :class:`DataWarning` raised inside as a ``warning:`` line on stderr (flags
    named as :func:`_cli_text` names them), after the block: the data is used, the command
    goes on. Other warnings are shown as Python shows them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            yield
        finally:
            flags = _flags(command)
            for found in caught:
                if issubclass(found.category, DataWarning):
                    typer.echo(f"warning: {_cli_text(str(found.message), flags)}", err=True)
                else:
                    warnings.showwarning(
                        found.message, found.category, found.filename, found.lineno
                    )


def errors_to_exit(func: F) -> F:
    """Map the library's errors, and unreadable files, to one line and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LabelwiseError as exc:
            _fail(_cli_text(str(exc), _flags(func)))
        except OSError as exc:  # unreadable files, a full disk: one line, no traceback
            where = f": {exc.filename}" if exc.filename else ""
            _fail(f"{exc.strerror or exc}{where}")
        except Exception as exc:  # a damaged or unreachable database: one line too
            from labelwise.store.db import as_storage_error

            meaning = as_storage_error(exc)
            if meaning is None:
                raise
            _fail(str(meaning))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        return None

    return wrapper  # type: ignore[return-value]


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-9"``, ``"3"``, ``"0,2,5"`` or ``"0-4,10-12"`` as a tuple of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise InvalidParameterError(
                f"--seeds: cannot read {part!r}; use forms like 0-9, 3 or 0,2,5"
            )
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise InvalidParameterError(f"--seeds: range {part!r} runs backwards")
        seeds.extend(range(lo, hi + 1))
    if len(set(seeds)) != len(seeds):
        raise InvalidParameterError(f"--seeds: {text!r} repeats a seed")
    return tuple(seeds)


def parse_list(text: str, option: str) -> tuple[str, ...]:
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    if not items:
        raise InvalidParameterError(f"{option}: give at least one name")
    if len(set(items)) != len(items):
        raise InvalidParameterError(f"{option}: {text!r} repeats a name")
    return items


def _progress() -> Any:
    """A progress bar on stderr (silent when stderr is not a terminal, e.g. in CI logs)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
        disable=not sys.stderr.isatty(),
    )


FeaturesOption = Annotated[
    str | None,
    typer.Option(
        "--features",
        help="How items are represented: text tfidf, embedding[:NAME], tfidf+embedding (the "
        "default) or auto (each fit picks by cross-validation); images pixels or "
        "embedding[:NAME] (default: randconv); tables columns. See `labelwise embedders`.",
    ),
]


def _reporter(progress: Any, description: str) -> Callable[[int, int | None], None]:
    """A ``(done, total)`` callback that draws ``progress`` (a task made at the first call);
    a total of None (not known yet) draws a moving bar with the count so far."""
    task: list[Any] = []

    def report(done: int, total: int | None) -> None:
        if not task:
            task.append(progress.add_task(description, total=total))
        progress.update(task[0], completed=done, total=total)

    return report


def _steps(progress: Any) -> Callable[[str, int, int | None], None]:
    """A ``(step, done, total)`` callback (``labelwise.services.transfer.StepProgress``): one bar
    per step of an import (reading, saving images, inserting, embedding), each a
    :func:`_reporter` made at the step's first call."""
    bars: dict[str, Callable[[int, int | None], None]] = {}

    def report(step: str, done: int, total: int | None) -> None:
        if step not in bars:
            bars[step] = _reporter(progress, step)
        bars[step](done, total)

    return report


ProjectDir = Annotated[Path, typer.Argument(help="The project folder.")]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL, e.g. postgresql://host/db (default: the folder's SQLite file).",
    ),
]


def _split_labels(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",")] if text else None


TextColumnOption = Annotated[
    str | None,
    typer.Option(
        "--text-column",
        help="Column holding the text, by name or 0-based position (default: one named text, "
        "message, sentence, ..., else the longest string column).",
    ),
]
ImageColumnOption = Annotated[
    str | None,
    typer.Option(
        "--image-column", help="Column holding image paths, relative to the file's folder."
    ),
]
LabelColumnOption = Annotated[
    str | None,
    typer.Option(
        "--label-column",
        help="Column holding labels (default: one named label, class, target, ...). A warning "
        "says when it looks like ids: over 20 distinct values, more than half its labeled rows.",
    ),
]
IdColumnOption = Annotated[
    str | None,
    typer.Option(
        "--id-column",
        help="Column holding each item's unique id (default: one named id, item_id or uid). "
        "Without one, items are numbered by the row they take in the project: 0, 1, ... for "
        "the first file, on from the project's last item for later ones.",
    ),
]
FeatureColumnsOption = Annotated[
    str | None,
    typer.Option(
        "--feature-columns",
        help="Comma-separated columns to use as a table's features (default: every numeric "
        "column that is not the id or the label).",
    ),
]
LabelNamesOption = Annotated[
    str | None,
    typer.Option(
        "--label-names",
        help="Names of integer labels, in class order: cat,dog makes label 0 cat and 1 dog. An "
        ".npz file may name its classes itself, in a label_names or classes array.",
    ),
]
WithLabelsOption = Annotated[
    bool,
    typer.Option(
        "--with-labels",
        help="Also import the file's labels as answers (by the import annotator); a Labelwise "
        "export brings back every answer with its annotator.",
    ),
]
