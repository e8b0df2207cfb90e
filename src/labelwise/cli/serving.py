"""The commands that run a project: ``serve`` (the labeling app, and the worker beside it),
``worker`` (the worker alone) and ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from labelwise.cli.common import DbOption, ProjectDir, _data_warnings, errors_to_exit
from labelwise.exceptions import InvalidParameterError


def _configure_logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Score the pool on a Dask cluster: a scheduler address (tcp://host:8786), or "
        "local[:N] to start N worker processes here (needs pip install labelwise[scale]).",
    ),
]


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


@errors_to_exit
def demo(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Where the demo project lives [default: labelwise-demo, or "
            "labelwise-demo-multi-label].",
            show_default=False,
        ),
    ] = None,
    multi_label: Annotated[
        bool,
        typer.Option(
            "--multi-label",
            help="The multi-label demo: 3,000 Reddit comments (GoEmotions), each with the set "
            "of emotions it carries.",
        ),
    ] = False,
) -> None:
    """A ready project from the bundled SMS spam collection (or, with --multi-label, the
    bundled GoEmotions comments): server, worker, and a one-time link that signs you in as
    admin. Run it again to continue where you stopped."""
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
        with _data_warnings(demo):  # the bundled data's repeated texts: one line, as init says
            folder, token = demo_project(
                directory
                or Path("labelwise-demo-multi-label" if multi_label else "labelwise-demo"),
                multi_label=multi_label,
            )
    except BaseException:
        listening.close()
        raise

    def announce(opened: Any, base: str) -> None:
        link = admin_link(opened, base, token=token, minutes=DEMO_LINK_MINUTES)
        if multi_label:
            what = "3,000 Reddit comments to label with the emotions they carry (several at once)"
            keys = "1-7 turn labels on and off, Enter submits, s skip, u undo, ? help"
        else:
            what, keys = (
                "5,574 SMS messages to label as ham or spam",
                "1 ham, 2 spam, s skip, u undo, ? help",
            )
        typer.echo(
            f"\nLabelwise demo: {what}.\nOpen  {link}\n"
            f"Keys: {keys}. Ctrl+C stops; run again to resume.\n",
        )

    serve_project(
        str(folder), db_url=None, listening=listening, with_worker=True, announce=announce
    )
