"""The commands that make and keep a project: ``init``, ``import``, ``token``, ``config``,
``export``, ``backup`` and ``status``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from labelwise.cli.common import (
    DbOption,
    FeatureColumnsOption,
    FeaturesOption,
    IdColumnOption,
    ImageColumnOption,
    LabelColumnOption,
    LabelNamesOption,
    ProjectDir,
    TextColumnOption,
    WithLabelsOption,
    _data_warnings,
    _progress,
    _split_labels,
    _steps,
    errors_to_exit,
    parse_list,
)
from labelwise.exceptions import InvalidParameterError


def _list_options(feature_columns: str | None, label_names: str | None) -> dict[str, Any]:
    """``--feature-columns`` and ``--label-names`` as the lists the import takes (None: not
    given)."""
    return {
        "feature_columns": None
        if feature_columns is None
        else list(parse_list(feature_columns, "--feature-columns")),
        "label_names": None
        if label_names is None
        else list(parse_list(label_names, "--label-names")),
    }


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
    multi_label: Annotated[
        bool,
        typer.Option(
            "--multi-label",
            help="An answer is a set of labels, possibly empty (fixed for the project). The "
            "label column then holds a list per item: names joined by ; in CSV/TSV "
            "(insult;threat; [] for none of them; an empty cell is no label), a JSON list in "
            "JSONL/JSON, several choices in Label Studio. Without --labels the label set is "
            "every name the lists hold, sorted.",
        ),
    ] = False,
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
            settings=_initial_settings(
                ProjectSettings(features=features, multi_label=multi_label), set_ or []
            ),
            id_column=id_column,
            **_list_options(feature_columns, label_names),
            steps=_steps(progress),
        )
    project = opened.project()
    from labelwise.store.projects import feature_spec

    shown = list(project.label_set)
    if len(shown) > 12:  # a long label set (see the warning, if any) on one short line
        shown = [*shown[:10], f"... ({len(project.label_set)} in all)"]
    sets = "multi-label, " if multi_label else ""
    typer.echo(
        f"created project {project.name!r} ({project.kind} as {feature_spec(project).name}, "
        f"{sets}labels: {', '.join(shown)}) in {opened.folder.root}",
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
            **_list_options(feature_columns, label_names),
            steps=_steps(progress),
        )
    opened.db.analyze()
    typer.echo(f"imported {added} items from {data.name}")


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


@errors_to_exit
def status(
    project_dir: ProjectDir,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Progress, the unbiased accuracy estimate, the expected gain, and whether to stop (for a
    multi-label project: micro/macro F1, subset accuracy, Hamming loss and agreement)."""
    from labelwise.services.dashboard import dashboard
    from labelwise.services.dashboard_sets import status_lines
    from labelwise.services.setup import open_project
    from labelwise.store.projects import get_project
    from labelwise.store.versions import COLD_START

    opened = open_project(project_dir, db_url=db)
    with opened.db.read() as session:
        figures = dashboard(session, get_project(session, project_id=opened.project_id))
    stop = figures["stopping"]
    sets = figures.get("multi_label")
    if as_json:
        keys = ["project", "progress", "distribution", "stopping"]
        keys += ["multi_label", "agreement"] if sets is not None else []
        typer.echo(json.dumps({k: figures[k] for k in keys}, indent=1))
        return
    prog = figures["progress"]
    lines = [
        f"{figures['project']['name']}: {prog['text']}; "
        f"{prog['labels']} answers, {prog['skips']} skips, {prog['conflicts']} conflicts",
        "labels: "
        + ", ".join(f"{k} {v}" for k, v in figures["distribution"].items())
        + (f", none of them {sets['empty_sets']}" if sets is not None else ""),
    ]
    serving = next((v for v in figures["versions"] if v["current"]), None)
    if serving is None:
        lines.append("model: none yet")
    elif serving["status"] == COLD_START:  # a queue chosen without a model: there is none
        lines.append(
            f"model: none yet (v{serving['version']} is the cold-start queue: typical items, "
            "chosen before any model)"
        )
    else:
        lines.append(
            f"model: v{serving['version']} ({serving['model']}, {serving['labels']} labels)"
        )
    last = figures["versions"][-1] if figures["versions"] else None
    if last is not None and last["status"] == "failed":
        lines.append(f"last fit failed (v{last['version']}): {last['error']}")
    est = stop["estimate"]
    if sets is not None:
        lines += status_lines(figures)
    else:
        lines.append(
            f"estimate (model v{est['version']}, {est['n']} random items): accuracy "
            f"{est['accuracy']:.3f} [{est['accuracy_low']:.3f}, {est['accuracy_high']:.3f}], "
            f"macro-F1 {est['macro_f1']:.3f} [{est['macro_f1_low']:.3f}, "
            f"{est['macro_f1_high']:.3f}]"
            if est
            else "estimate: not yet (needs answers on random exploration items)"
        )
    lines += [f"- {r}" for r in stop["reasons"]]
    lines.append(f"verdict: {stop['verdict']}")
    typer.echo("\n".join(lines))
