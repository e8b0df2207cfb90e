"""The commands about learning itself: ``simulate`` (replaying a labeled dataset),
``benchmark lu2023``, ``triage``, and the lists of ``strategies``, ``models`` and
``embedders``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from labelwise.cli.common import (
    DbOption,
    FeaturesOption,
    ProjectDir,
    _progress,
    errors_to_exit,
    parse_list,
    parse_seeds,
)

if TYPE_CHECKING:
    from labelwise.io.dataset import Dataset


@errors_to_exit
def simulate(
    data: Annotated[
        Path,
        typer.Argument(
            help="A labeled dataset (CSV, TSV, JSONL, Parquet, LIBSVM, .npz or an image "
            "folder), or the name of a bundled one: sms-spam, goemotions (multi-label)."
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
    multi_label: Annotated[
        bool | None,
        typer.Option(
            "--multi-label/--single-label",
            help="Each item carries a set of labels, possibly empty: the label column holds "
            "names joined by ';' (a JSON list in JSON/JSONL, a list column in Parquet); an "
            "empty cell is the empty set and the labels are every name the file uses, sorted. "
            "Without either flag the data is read as multi-label when its label column holds a "
            "list (JSON/JSONL, Parquet) or any label contains ';' or is written as a JSON list "
            "(starts with '['). Strategies are then multi-label names (mean-margin, min-margin, "
            "mmc, lci, qbc, random, default, ...) and the metric macro_f1, micro_f1 or "
            "subset_accuracy.",
        ),
    ] = None,
) -> None:
    """Replay a labeled dataset to compare strategies: learning curves, AUBC, labels needed."""
    from labelwise.datasets import resolve_data_path
    from labelwise.features import parse_features
    from labelwise.learning.multilabel_eval import label_names_of
    from labelwise.learning.report import summary_table, write_simulation
    from labelwise.learning.simulate import SimulationConfig, simulate_dataset

    read = _simulation_data(
        resolve_data_path(data),
        multi_label,
        text_column=text_column,
        label_column=label_column,
        image_column=image_column,
    )
    dataset, multi = read.data, read.label_lists
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
        multi_label=multi,
    )
    spec = parse_features(dataset.kind, features)
    if multi:
        names = label_names_of(dataset.labels if dataset.labels is not None else ())
        described = f"multi-label over {', '.join(names)}"
    else:
        y = dataset.require_labels()
        described = f"classes {', '.join(map(str, sorted(set(y.tolist()), key=str)))}"
    typer.echo(
        f"{dataset.kind} dataset {data.name}: {len(dataset)} items as {spec.name}, {described}",
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


@dataclass(frozen=True)
class _SimulationData:
    """The dataset ``simulate`` replays, and whether its label column held label lists."""

    data: Dataset
    label_lists: bool


def _simulation_data(path: Path, multi_label: bool | None, **columns: Any) -> _SimulationData:
    """Read ``path`` for ``simulate``: as label lists when ``multi_label`` says so; when it says
    nothing, as label lists if reading one label per row meets a list (JSON/JSONL, Parquet) or
    a label containing ';' or written as a JSON list."""
    from labelwise.exceptions import InvalidDataError
    from labelwise.io.load import load_dataset
    from labelwise.learning.multilabel_eval import looks_multi_label

    if multi_label:
        data = load_dataset(path, multi_label=True, **columns)
        if data.labels is None:
            raise InvalidDataError(
                f"--multi-label needs a label column, and {path.name} has none: name it with "
                "--label-column"
            )
        return _SimulationData(data, True)
    try:
        data = load_dataset(path, **columns)
    except InvalidDataError as first:
        if multi_label is not None:
            raise
        # A list where one label was expected: read the file as label lists (or fail as it did).
        try:
            return _SimulationData(load_dataset(path, multi_label=True, **columns), True)
        except InvalidDataError:
            raise first from None
    if multi_label is None and data.labels is not None and looks_multi_label(data.labels):
        return _SimulationData(load_dataset(path, multi_label=True, **columns), True)
    return _SimulationData(data, False)


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


def strategies() -> None:
    """List the query strategies."""
    from labelwise.strategies.registry import available_strategies

    for name, description in available_strategies().items():
        typer.echo(f"{name:16s} {description}")


def models() -> None:
    """List the model names."""
    from labelwise.models.registry import available_models

    for name, description in available_models().items():
        typer.echo(f"{name:12s} {description}")


def embedders() -> None:
    """List the embedders a --features word may name (embedding:NAME)."""
    from labelwise.features import available_embedders

    for name, description in available_embedders().items():
        typer.echo(f"{name:22s} {description}")
