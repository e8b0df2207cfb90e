"""The ``labelwise`` command: a thin adapter that parses, calls the library and maps errors.

Every deliberate error (:class:`~labelwise.exceptions.LabelwiseError`) ends the command with one
line on stderr and exit status 2; nothing else here prints tracebacks on bad input. Messages the
library words for Python callers (``label_column=``) name the command's flags instead
(``--label-column``): see :func:`_cli_text`. What the data import finds suspicious
(:class:`~labelwise.exceptions.DataWarning`) is one ``warning:`` line each on stderr.

Help is Markdown (a paragraph's line breaks are not kept), and options that take no value
(flags, ``--help``) show no type.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_type_hints

import typer
from typer.core import TyperGroup

from labelwise.exceptions import DataWarning, InvalidParameterError, LabelwiseError


def _quiet_flags(params: list[Any]) -> None:
    """Options that take no value (flags, ``--help``) get no type in help (typer shows
    ``<bool>``), and a flag that is off by default no ``[default: no-...]``."""
    for param in params:
        if getattr(param, "is_flag", False) and getattr(param, "metavar", "") is None:
            param.metavar = ""
            if param.default is False:
                param.show_default = False


class _HelpGroup(TyperGroup):
    """A command group whose help, and its commands' help, has no noise (:func:`_quiet_flags`)."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _quiet_flags([option])
        return option

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _quiet_flags([*command.params, command.get_help_option(ctx)])
        return command


app = typer.Typer(
    name="labelwise",
    help="Human-in-the-loop active learning: let the model choose what your experts label next.",
    cls=_HelpGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
benchmark_app = typer.Typer(
    help="Reproduce published active-learning benchmarks.",
    cls=_HelpGroup,
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(benchmark_app, name="benchmark")

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


@app.command()
@errors_to_exit
def simulate(
    data: Annotated[
        Path,
        typer.Argument(
            help="A labeled dataset (CSV, TSV, JSONL, Parquet, LIBSVM, .npz or an image "
            "folder), or the name of a bundled one: sms-spam."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder for results.json, curves.csv, the plot and summary.md."),
    ],
    text_column: Annotated[
        str | None, typer.Option(help="Column holding the text (name or 0-based position).")
    ] = None,
    label_column: Annotated[str | None, typer.Option(help="Column holding the label.")] = None,
    image_column: Annotated[
        str | None, typer.Option(help="Column holding image file paths.")
    ] = None,
    strategies: Annotated[
        str, typer.Option(help="Comma-separated strategy names.")
    ] = "random,margin,default",
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0-9 or 0,3,7.")] = "0-4",
    initial: Annotated[int, typer.Option(help="Labels to start from.")] = 20,
    initial_method: Annotated[
        str,
        typer.Option(
            help="How the first labels are chosen: random, or typical (the most typical item "
            "of each k-means cluster, TypiClust)."
        ),
    ] = "random",
    batch_size: Annotated[int, typer.Option(help="Items queried per round.")] = 10,
    budget: Annotated[
        int | None,
        typer.Option(help="Total labels, initial set included (default: min(pool, 500))."),
    ] = None,
    model: Annotated[str, typer.Option(help="Model name; see `labelwise models`.")] = "logreg",
    test_size: Annotated[
        float, typer.Option(help="Share of the data held out for evaluation.")
    ] = 0.3,
    noise: Annotated[
        float, typer.Option(help="Chance the simulated oracle answers a wrong class.")
    ] = 0.0,
    metric: Annotated[
        str, typer.Option(help="Metric for AUBC and 'labels to reach': macro_f1, accuracy, ...")
    ] = "macro_f1",
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Parallel processes.")] = 1,
    features: FeaturesOption = None,
) -> None:
    """Replay a labeled dataset to compare strategies: learning curves, AUBC, labels needed."""
    from labelwise.datasets import resolve_data_path
    from labelwise.features import parse_features
    from labelwise.io.load import load_dataset
    from labelwise.learning.report import summary_table, write_simulation
    from labelwise.learning.simulate import SimulationConfig, simulate_dataset

    config = SimulationConfig(
        strategies=parse_list(strategies, "--strategies"),
        seeds=parse_seeds(seeds),
        initial=initial,
        initial_method=initial_method,
        batch_size=batch_size,
        budget=budget,
        model=model,
        test_size=test_size,
        noise=noise,
        metric=metric,
        n_jobs=jobs,
        features=features,
    )
    dataset = load_dataset(
        resolve_data_path(data),
        text_column=text_column,
        label_column=label_column,
        image_column=image_column,
    )
    y = dataset.require_labels()
    spec = parse_features(dataset.kind, features)
    typer.echo(
        f"{dataset.kind} dataset {data.name}: {len(dataset)} items as {spec.name}, "
        f"classes {', '.join(map(str, sorted(set(y.tolist()), key=str)))}",
        err=True,
    )
    total = len(config.strategies) * len(config.seeds)
    with _progress() as progress:
        task = progress.add_task("simulating", total=total)
        result = simulate_dataset(
            dataset, config, on_progress=lambda done, _t: progress.update(task, completed=done)
        )
    paths = write_simulation(result, out)
    typer.echo(summary_table(result))
    typer.echo(f"\nwrote {', '.join(p.name for p in paths.values())} to {out}", err=True)


@benchmark_app.command("lu2023")
@errors_to_exit
def benchmark_lu2023(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Folder of NAME-svmstyle.txt LIBSVM files.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for runs.jsonl, results.json and results.md.")
    ],
    datasets: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated dataset names (default: every one of the published table found)."
        ),
    ] = None,
    strategies: Annotated[
        str, typer.Option(help="uniform, us-c and/or Labelwise strategies (name or name@model).")
    ] = "uniform,us-c,default",
    seeds: Annotated[
        str | None, typer.Option(help="Seeds (default: 0-99, or 0-9 for datasets of 2,000+ rows).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Queries per round (the paper: 1).")] = 1,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Parallel processes.")] = 1,
) -> None:
    """Lu, Li & Lin (2023): AUBC of the published protocol, beside the published table."""
    from labelwise.benchmark.lu2023 import markdown_table, run_benchmark

    names = parse_list(datasets, "--datasets") if datasets else None
    seed_list = parse_seeds(seeds) if seeds else None

    def report(done: int, total: int, res: Any) -> None:
        value = "skipped (one class in the initial set)" if res.aubc is None else f"{res.aubc:.4f}"
        typer.echo(
            f"[{done}/{total}] {res.dataset} {res.strategy} seed {res.seed}: {value} "
            f"({res.seconds:.1f} s)",
            err=True,
        )

    results = run_benchmark(
        data_dir,
        out,
        datasets=names,
        strategies=parse_list(strategies, "--strategies"),
        seeds=seed_list,
        batch_size=batch_size,
        n_jobs=jobs,
        on_progress=report,
    )
    table = markdown_table(results, batch_size=batch_size)
    (out / "results.md").write_text(table + "\n")
    typer.echo(table)


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


@app.command()
@errors_to_exit
def init(
    project_dir: ProjectDir,
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="The items to label: CSV, TSV, JSONL/JSON, Parquet, LIBSVM, .npy or .npz, or a "
            "folder of images (one sub-folder per class, or flat). An .npz file's train, val "
            "and test splits all go into the pool, each item's split kept in its meta.",
        ),
    ],
    text_column: TextColumnOption = None,
    image_column: ImageColumnOption = None,
    label_column: LabelColumnOption = None,
    labels: Annotated[
        str | None,
        typer.Option(
            help="The label set, e.g. spam,ham (default: the names from --label-names, else "
            "the values of the label column)."
        ),
    ] = None,
    with_labels: WithLabelsOption = False,
    id_column: IdColumnOption = None,
    feature_columns: FeatureColumnsOption = None,
    label_names: LabelNamesOption = None,
    name: Annotated[
        str | None, typer.Option(help="Project name (default: the folder's name).")
    ] = None,
    features: FeaturesOption = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="A setting, as labelwise config sets it (repeatable): --set strategy=margin "
            "--set show_guess=never --set guidelines=@guide.md --set label_help.spam='Ads, "
            "scams'. labelwise config PROJECT lists them.",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Create a project folder from a data file; prints the first admin token.

    The file is checked as it is read: a label column that looks like ids, a guessed text
    encoding, texts that repeat, an .npz file's splits are each one warning line on stderr.
    Large files show their progress on a terminal.
    """
    from labelwise.datasets import resolve_data_path
    from labelwise.services.setup import init_project
    from labelwise.store.projects import ProjectSettings

    with _data_warnings(init), _progress() as progress:
        opened, token = init_project(
            project_dir,
            resolve_data_path(data),
            name=name,
            text_column=text_column,
            image_column=image_column,
            label_column=label_column,
            labels=_split_labels(labels),
            with_labels=with_labels,
            db_url=db,
            settings=_initial_settings(ProjectSettings(features=features), set_ or []),
            id_column=id_column,
            feature_columns=None
            if feature_columns is None
            else list(parse_list(feature_columns, "--feature-columns")),
            label_names=None
            if label_names is None
            else list(parse_list(label_names, "--label-names")),
            steps=_steps(progress),
        )
    project = opened.project()
    from labelwise.store.projects import feature_spec

    shown = list(project.label_set)
    if len(shown) > 12:  # a long label set (see the warning, if any) on one short line
        shown = [*shown[:10], f"... ({len(project.label_set)} in all)"]
    typer.echo(
        f"created project {project.name!r} ({project.kind} as {feature_spec(project).name}, "
        f"labels: {', '.join(shown)}) in {opened.folder.root}",
        err=True,
    )
    typer.echo(f"admin token (shown once): {token}", err=True)
    typer.echo(token)


def _initial_settings(settings: Any, assignments: list[str]) -> Any:
    """``settings`` (a ``ProjectSettings``) with each ``KEY=VALUE`` of ``--set`` applied, in
    order, as :func:`config` applies one."""
    from labelwise.store.projects import ProjectSettings, setting_change

    for assignment in assignments:
        key, equals, value = assignment.partition("=")
        if not equals or not key.strip():
            raise InvalidParameterError(f"--set takes KEY=VALUE, got {assignment!r}")
        changes = setting_change(settings, key.strip(), _setting_text(value))
        settings = ProjectSettings.from_dict({**settings.to_dict(), **changes})
    return settings


def _setting_text(value: str) -> str:
    """A setting's value as given on the command line; ``@FILE`` is that file's text."""
    if not value.startswith("@"):
        return value
    source = Path(value[1:])
    try:
        return source.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidParameterError(f"{source} is not UTF-8 text") from None


@app.command("import")
@errors_to_exit
def import_(
    project_dir: ProjectDir,
    data: Annotated[
        Path, typer.Argument(help="The file (or image folder) to add; formats as for init.")
    ],
    text_column: TextColumnOption = None,
    image_column: ImageColumnOption = None,
    label_column: LabelColumnOption = None,
    with_labels: WithLabelsOption = False,
    id_column: IdColumnOption = None,
    feature_columns: FeatureColumnsOption = None,
    label_names: LabelNamesOption = None,
    db: DbOption = None,
) -> None:
    """Add the items of a file to a project: all of them, or none.

    Checked as init checks a file; a text already in the project, or repeated in the file,
    under a new id is a warning too (every copy is imported).
    """
    from labelwise.services.setup import open_project
    from labelwise.services.transfer import import_file
    from labelwise.store.projects import get_project

    opened = open_project(project_dir, db_url=db)
    with _data_warnings(import_), opened.db.write() as session, _progress() as progress:
        project = get_project(session, project_id=opened.project_id)
        added = import_file(
            session,
            project,
            opened.folder,
            data,
            text_column=text_column,
            image_column=image_column,
            label_column=label_column,
            with_labels=with_labels,
            id_column=id_column,
            feature_columns=None
            if feature_columns is None
            else list(parse_list(feature_columns, "--feature-columns")),
            label_names=None
            if label_names is None
            else list(parse_list(label_names, "--label-names")),
            steps=_steps(progress),
        )
    opened.db.analyze()
    typer.echo(f"imported {added} items from {data.name}")


@app.command()
@errors_to_exit
def token(
    project_dir: ProjectDir,
    name: Annotated[str, typer.Option("--name", help="Who signs in.")],
    role: Annotated[
        str | None,
        typer.Option("--role", help="admin or annotator (new annotators: annotator)."),
    ] = None,
    reissue: Annotated[
        bool,
        typer.Option(
            "--reissue",
            help="A new token for an existing annotator (lost or leaked token, or restored "
            "from an export); the old token, and every browser signed in with it, stop working.",
        ),
    ] = False,
    api: Annotated[
        bool,
        typer.Option(
            "--api",
            help="Print the long-lived token itself (for scripts: Authorization: Bearer) "
            "instead of a sign-in link. Shown once; only its hash is stored.",
        ),
    ] = False,
    url: Annotated[
        str, typer.Option("--url", help="The server's address, as annotators reach it.")
    ] = "http://127.0.0.1:8000",
    minutes: Annotated[
        int, typer.Option("--minutes", help="How long the sign-in link lasts.")
    ] = 30,
    db: DbOption = None,
) -> None:
    """A one-time sign-in link for an annotator (made first if new), or with --api a token.

    A link signs one browser in, once, within --minutes; it carries no long-lived secret, so it
    may pass through chat or mail. Run it again for another browser or a new link.
    """
    from labelwise.services.setup import open_project
    from labelwise.store.annotators import create_annotator, find_annotator, reissue_token
    from labelwise.store.projects import get_project
    from labelwise.store.sign_ins import link_url, new_link

    if not url.startswith(("http://", "https://")):
        raise InvalidParameterError(f"--url must start with http:// or https://, not {url!r}")
    opened = open_project(project_dir, db_url=db)
    with opened.db.write() as session:
        project = get_project(session, project_id=opened.project_id)
        secret = None
        existing = find_annotator(session, project, name)
        if reissue:
            annotator, secret = reissue_token(session, project, name=name, role=role)
        elif existing is None:
            annotator, secret = create_annotator(
                session, project, name=name, role=role or "annotator"
            )
        elif api or (role is not None and role != existing.role):
            what = "print its token (shown once, when made)" if api else "change a role"
            raise InvalidParameterError(
                f"{name!r} already exists; to {what}, add --reissue (a new token; the old "
                "one stops working)"
            )
        elif existing.disabled:
            raise InvalidParameterError(f"{name!r} is disabled; --reissue lets them back in")
        else:
            annotator = existing
        if api:
            typer.echo(secret)
            return
        code = new_link(session, annotator, minutes=minutes)
        who = f"{annotator.name} ({annotator.role})"
    typer.echo(link_url(url, code))
    typer.echo(
        f"a one-time sign-in link for {who}, valid {minutes} minutes "
        "(--api prints a token for scripts instead)",
        err=True,
    )


def _shown(value: Any) -> str:
    """A setting's value on one line."""
    if isinstance(value, str) and "\n" in value:
        return f"({value.count(chr(10)) + 1} lines, {len(value):,} characters)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    if value == "":
        return "(none)"
    return "(default)" if value is None else str(value)


@app.command()
@errors_to_exit
def config(
    project_dir: ProjectDir,
    key: Annotated[
        str | None,
        typer.Argument(help="A setting (label_help.LABEL, label_keys.LABEL for one label)."),
    ] = None,
    value: Annotated[
        str | None,
        typer.Argument(help="Its new value; @FILE reads it from a file (guidelines.md)."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Show the project's settings, one, or change one (checked as the settings page does).

    Without KEY: every setting, its value and what it does. With KEY: its value. With KEY and
    VALUE: the change, which the server and the worker see at once.
    """
    from labelwise.services.setup import open_project
    from labelwise.store.projects import (
        SETTING_HELP,
        get_project,
        setting_change,
        settings_of,
        update_settings,
    )

    opened = open_project(project_dir, db_url=db)
    if value is None:
        with opened.db.read() as session:
            settings = settings_of(get_project(session, project_id=opened.project_id))
        values = settings.to_dict()
        if key is not None:
            name, _, entry = key.partition(".")
            if name not in values:
                setting_change(settings, key, "")  # says which settings there are
            shown = values[name].get(entry, "") if entry else values[name]
            typer.echo(json.dumps(shown) if isinstance(shown, dict) else shown or "")
            return
        width = max(map(len, values))
        for name, current in values.items():
            typer.echo(f"{name:<{width}}  {_shown(current):<24}  {SETTING_HELP.get(name, '')}")
        return
    if key is None:  # typer fills KEY first; kept for the type checker
        raise InvalidParameterError("name the setting to change")
    value = _setting_text(value)
    with opened.db.write() as session:
        project = get_project(session, project_id=opened.project_id)
        before = settings_of(project)
        after = update_settings(session, project, setting_change(before, key, value))
    name = key.partition(".")[0]
    typer.echo(f"{name}: {_shown(getattr(before, name))} -> {_shown(getattr(after, name))}")


@app.command()
@errors_to_exit
def export(
    project_dir: ProjectDir,
    format: Annotated[str, typer.Option("--format", help="csv, jsonl or label-studio.")] = "csv",
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write (default: stdout).")
    ] = None,
    labeled_only: Annotated[bool, typer.Option(help="Leave out items without a label.")] = False,
    predictions: Annotated[
        bool,
        typer.Option(
            "--predictions",
            help="Add the served model's prediction, confidence and one probability per label "
            "(and its version) to every item; refused without a model.",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Write every item with its labels and history (and, with --predictions, the model's
    prediction)."""
    from labelwise.services.export import export_project
    from labelwise.services.setup import open_project
    from labelwise.store.projects import get_project

    if format not in ("csv", "jsonl", "label-studio"):
        raise InvalidParameterError(f"--format must be csv, jsonl or label-studio, got {format!r}")
    opened = open_project(project_dir, db_url=db)
    with opened.db.read() as session:
        project = get_project(session, project_id=opened.project_id)
        # A path is written through a temporary file: a failed export leaves nothing behind.
        target: Any = sys.stdout if out is None else out
        count = export_project(
            session,
            project,
            format,
            target,
            labeled_only=labeled_only,
            folder=opened.folder,
            predictions=predictions,
        )
    if out is not None:
        typer.echo(f"wrote {count} items to {out}", err=True)


@app.command()
@errors_to_exit
def backup(
    project_dir: ProjectDir,
    dest: Annotated[Path, typer.Argument(help="A new folder for the copy.")],
    db: DbOption = None,
) -> None:
    """Copy a consistent snapshot of the project (database, models, features, media), safe
    while the server runs. Restore: see the README."""
    from labelwise.services.backup import backup_project

    result = backup_project(project_dir, dest, db_url=db)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    features = "" if result.features else "; feature cache left out (rebuilt at the next fit)"
    typer.echo(
        f"backed up {result.items} items, {result.labels} labels, {result.model_versions} model "
        f"versions and {result.files} files ({result.bytes / 2**20:,.1f} MiB) to "
        f"{result.destination}{features}"
    )


@app.command("triage")
@errors_to_exit
def triage_(
    project_dir: ProjectDir,
    data: Annotated[
        Path | None,
        typer.Argument(help="New items to import and triage (default: every open item)."),
    ] = None,
    sensitivity: Annotated[
        float | None, typer.Option(help="Target sensitivity for --positive, e.g. 0.98.")
    ] = None,
    positive: Annotated[
        str | None, typer.Option(help="The class that must not be missed (with --sensitivity).")
    ] = None,
    precision: Annotated[
        float | None, typer.Option(help="Target precision of the automatic decisions.")
    ] = None,
    audit: Annotated[
        float, typer.Option(help="Share of automatic decisions also sent to experts.")
    ] = 0.05,
    point_estimate: Annotated[
        bool,
        typer.Option(help="Hold the error's point estimate to the target, not its upper bound."),
    ] = False,
    calibration: Annotated[str, typer.Option(help="sigmoid or isotonic.")] = "sigmoid",
    text_column: Annotated[str | None, typer.Option(help="Column holding the text.")] = None,
    image_column: Annotated[str | None, typer.Option(help="Column holding image paths.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Decide confident new items automatically; route the rest (and an audit sample) to experts."""
    from labelwise.learning.triage import TriageTarget
    from labelwise.services.setup import open_project
    from labelwise.services.triage import import_and_triage, open_item_ids, triage_items
    from labelwise.store.projects import get_project

    target = TriageTarget.from_options(
        sensitivity=sensitivity,
        precision=precision,
        positive=positive,
        point_estimate=point_estimate,
        names=("--sensitivity", "--precision"),
    )
    opened = open_project(project_dir, db_url=db)
    if data is not None:
        summary = import_and_triage(
            opened.db,
            opened.folder,
            opened.project_id,
            data,
            target,
            audit=audit,
            calibration=calibration,
            text_column=text_column,
            image_column=image_column,
        )
    else:
        with opened.db.read() as session:
            ids = open_item_ids(session, get_project(session, project_id=opened.project_id))
        summary = triage_items(
            opened.db,
            opened.folder,
            opened.project_id,
            ids,
            target,
            audit=audit,
            calibration=calibration,
        )
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    expected = summary.policy.get("expected", {})
    typer.echo(
        f"triaged {summary.items} items for {target.describe()}: {summary.accepted} decided "
        f"automatically ({summary.audit} of them audited by experts), "
        f"{summary.routed} routed to experts"
        + (f", {summary.skipped} answered meanwhile and left alone" if summary.skipped else "")
    )
    if summary.by_label:
        typer.echo(
            "automatic decisions: "
            + ", ".join(f"{k} {v}" for k, v in sorted(summary.by_label.items()))
        )
    if expected:
        line = f"on held-out labeled items this policy accepts {expected['accepted_share']:.1%}"
        if expected.get("sensitivity") is not None:
            line += f" at sensitivity {expected['sensitivity']:.3f}"
        if expected.get("accepted_error") is not None:
            line += f", {expected['accepted_error']:.1%} of them wrong"
        typer.echo(line)
        if expected.get("note"):
            typer.echo(f"nothing could be decided automatically: {expected['note']}")
    typer.echo("the worker queues routed and audit items at its next fit")


def _configure_logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


@app.command()
@errors_to_exit
def status(
    project_dir: ProjectDir,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Progress, the unbiased accuracy estimate, the expected gain, and whether to stop."""
    from labelwise.services.dashboard import dashboard
    from labelwise.services.setup import open_project
    from labelwise.store.projects import get_project

    opened = open_project(project_dir, db_url=db)
    with opened.db.read() as session:
        figures = dashboard(session, get_project(session, project_id=opened.project_id))
    stop = figures["stopping"]
    if as_json:
        keys = ("project", "progress", "distribution", "stopping")
        typer.echo(json.dumps({k: figures[k] for k in keys}, indent=1))
        return
    prog = figures["progress"]
    lines = [
        f"{figures['project']['name']}: {prog['text']}; "
        f"{prog['labels']} answers, {prog['skips']} skips, {prog['conflicts']} conflicts",
        "labels: " + ", ".join(f"{k} {v}" for k, v in figures["distribution"].items()),
    ]
    serving = next((v for v in figures["versions"] if v["current"]), None)
    lines.append(
        f"model: v{serving['version']} ({serving['model']}, {serving['labels']} labels)"
        if serving
        else "model: none yet"
    )
    last = figures["versions"][-1] if figures["versions"] else None
    if last is not None and last["status"] == "failed":
        lines.append(f"last fit failed (v{last['version']}): {last['error']}")
    est = stop["estimate"]
    lines.append(
        f"estimate (model v{est['version']}, {est['n']} random items): accuracy "
        f"{est['accuracy']:.3f} [{est['accuracy_low']:.3f}, {est['accuracy_high']:.3f}], "
        f"macro-F1 {est['macro_f1']:.3f} [{est['macro_f1_low']:.3f}, {est['macro_f1_high']:.3f}]"
        if est
        else "estimate: not yet (needs answers on random exploration items)"
    )
    lines += [f"- {r}" for r in stop["reasons"]]
    lines.append(f"verdict: {stop['verdict']}")
    typer.echo("\n".join(lines))


SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Score the pool on a Dask cluster: a scheduler address (tcp://host:8786), or "
        "local[:N] to start N worker processes here (needs pip install labelwise[scale]).",
    ),
]


@app.command()
@errors_to_exit
def worker(project_dir: ProjectDir, db: DbOption = None, scheduler: SchedulerOption = None) -> None:
    """Retrain and re-rank in the foreground (beside `labelwise serve --no-worker`).

    With --scheduler the pool is scored on a Dask cluster (the same queue as on this machine);
    the project folder must then be at the same path on every Dask worker.
    """
    from labelwise.server.runtime import run_worker_forever

    if scheduler is not None:
        from labelwise.scale import parse_scheduler

        parse_scheduler(scheduler)
    _configure_logging()
    run_worker_forever(str(project_dir), db, scheduler=scheduler)


@app.command()
@errors_to_exit
def partition(
    features: Annotated[
        Path, typer.Argument(help="A feature matrix: .npy (dense) or .npz (scipy sparse).")
    ],
    out: Annotated[Path, typer.Argument(help="The partitioned pool folder to write.")],
    rows_per_partition: Annotated[
        int | None,
        typer.Option(help="Rows per file (default: about 64 MiB each); a few files per worker."),
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="npy (default for dense), parquet, or npz (sparse).")
    ] = None,
    ids: Annotated[
        Path | None, typer.Option(help="A text file of one unique id per row, in row order.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a pool already at OUT.")] = False,
) -> None:
    """Split a feature matrix into a partitioned pool folder for `labelwise score`."""
    from labelwise.pool import open_features
    from labelwise.scale import write_partitioned

    id_values = None
    if ids is not None:
        id_values = [line.strip() for line in ids.read_text(encoding="utf-8").splitlines()]
        id_values = [v for v in id_values if v]
    pool = write_partitioned(
        open_features(features),
        out,
        rows_per_partition=rows_per_partition,
        storage=storage,
        ids=id_values,
        overwrite=overwrite,
    )
    typer.echo(
        f"wrote {pool.n_rows} rows x {pool.n_features} features in {len(pool.partitions)} "
        f"{pool.storage} partitions to {pool.root}"
    )


@app.command()
@errors_to_exit
def score(
    pool_dir: Annotated[
        Path, typer.Argument(help="A partitioned pool folder (see `labelwise partition`).")
    ],
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            help="The fitted classifier, saved with joblib: your own, or a project's model "
            "version (PROJECT/models/vN.joblib). A pickle: only files you trust.",
        ),
    ],
    scheduler: Annotated[
        str,
        typer.Option(
            "--scheduler",
            help="A Dask scheduler address (tcp://host:8786), or local[:N] to start N worker "
            "processes here.",
        ),
    ],
    labels: Annotated[
        Path,
        typer.Option(
            "--labels",
            help="CSV, TSV or JSONL with columns id and label: the items labeled so far (a "
            "`labelwise export` file works). They are never chosen; qbc fits its committee "
            "on them, kcenter and coreset keep away from them; with fewer than two classes "
            "among them the choice is random (a cold start), as on one machine.",
        ),
    ],
    strategy: Annotated[str, typer.Option(help="See `labelwise strategies`.")] = "default",
    batch_size: Annotated[int, typer.Option(help="Items to choose.")] = 100,
    exploration: Annotated[float, typer.Option(help="Extra share of random items.")] = 0.0,
    routine: Annotated[float, typer.Option(help="Share of items the model is sure of.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seeds every random choice.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per item (row, id, kind, reason).")
    ] = False,
) -> None:
    """Choose the next items to label from a partitioned pool, scored on a Dask cluster.

    Prints rank, row, id, kind, utility and why, best first. The choice equals what one
    machine makes with the same model, labels, strategy and seed. The pool folder must be at
    the same path on every Dask worker, and the workers need labelwise installed.
    """
    from labelwise.scale import connect, open_partitioned, parse_scheduler, score_partitioned
    from labelwise.scale.files import load_model, read_labels
    from labelwise.strategies.query import BatchMix

    parse_scheduler(scheduler)
    mix = BatchMix(exploration=exploration, routine=routine)
    pool = open_partitioned(pool_dir)
    fitted = load_model(model)
    rows, values = read_labels(labels, pool, fitted.classes_)
    with connect(scheduler) as client:
        batch = score_partitioned(
            pool,
            fitted,
            client=client,
            labeled=rows,
            y_labeled=values,
            strategy=strategy,
            batch_size=batch_size,
            mix=mix,
            random_state=seed,
        )
    ids = pool.ids()
    for rank, (row, reason) in enumerate(zip(batch.indices, batch.reasons, strict=True), 1):
        item = str(ids[row]) if ids is not None else str(int(row))
        if as_json:
            record = {"rank": rank, "row": int(row), "id": item, "kind": reason.kind}
            typer.echo(json.dumps({**record, "reason": reason.to_dict()}))
        else:
            utility = "" if reason.utility is None else f"{reason.utility:.4g}"
            typer.echo(f"{rank}\t{row}\t{item}\t{reason.kind}\t{utility}\t{reason.summary}")


@app.command()
@errors_to_exit
def serve(
    project_dir: ProjectDir,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    db: DbOption = None,
    with_worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Also run the worker (in its own process).")
    ] = True,
    scheduler: SchedulerOption = None,
) -> None:
    """Serve the labeling app (and, by default, the worker beside it). Prints the address and
    a one-time sign-in link for the project's admin."""
    from labelwise.server.runtime import admin_link, listen, serve_project

    if scheduler is not None:
        if not with_worker:
            raise InvalidParameterError("--scheduler is for the worker; drop --no-worker")
        from labelwise.scale import parse_scheduler

        parse_scheduler(scheduler)
    _configure_logging()

    def announce(opened: Any, base: str) -> None:
        link = admin_link(opened, base)
        typer.echo(f"\nLabelwise: {opened.project().name} at {base}")
        if link:
            typer.echo(f"Sign in as admin (a one-time link, valid 30 minutes):  {link}")
        typer.echo(
            "Annotators: labelwise token PROJECT --name NAME prints a link for each. "
            "Ctrl+C stops.\n"
        )

    serve_project(
        str(project_dir),
        db_url=db,
        listening=listen(host, port),
        with_worker=with_worker,
        scheduler=scheduler,
        announce=announce,
    )


@app.command()
@errors_to_exit
def demo(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo project lives.")] = Path(
        "labelwise-demo"
    ),
) -> None:
    """A ready project from the bundled SMS spam collection: server, worker, and a one-time
    link that signs you in as admin. Run it again to continue where you stopped."""
    from labelwise.server.runtime import (
        DEMO_LINK_MINUTES,
        admin_link,
        demo_project,
        listen,
        serve_project,
    )

    _configure_logging()
    listening = listen("127.0.0.1", port)  # a port in use is said before anything is made
    try:
        folder, token = demo_project(directory)
    except BaseException:
        listening.close()
        raise

    def announce(opened: Any, base: str) -> None:
        link = admin_link(opened, base, token=token, minutes=DEMO_LINK_MINUTES)
        typer.echo(
            "\nLabelwise demo: 5,574 SMS messages to label as ham or spam.\n"
            f"Open  {link}\n"
            "Keys: 1 ham, 2 spam, s skip, u undo, ? help. Ctrl+C stops; run again to resume.\n",
        )

    serve_project(
        str(folder), db_url=None, listening=listening, with_worker=True, announce=announce
    )


@app.command()
def strategies() -> None:
    """List the query strategies."""
    from labelwise.strategies.registry import available_strategies

    for name, description in available_strategies().items():
        typer.echo(f"{name:16s} {description}")


@app.command()
def models() -> None:
    """List the model names."""
    from labelwise.models.registry import available_models

    for name, description in available_models().items():
        typer.echo(f"{name:12s} {description}")


@app.command()
def embedders() -> None:
    """List the embedders a --features word may name (embedding:NAME)."""
    from labelwise.features import available_embedders

    for name, description in available_embedders().items():
        typer.echo(f"{name:22s} {description}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
