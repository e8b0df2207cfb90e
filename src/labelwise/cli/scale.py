"""The commands for a pool too large for one machine: ``partition`` (a feature matrix into a
partitioned pool folder) and ``score`` (the next items chosen on a Dask cluster)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from labelwise.cli.common import errors_to_exit


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
