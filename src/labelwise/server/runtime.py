"""Running things: the server with its worker process, the worker alone, the demo project.

The embedded default (`labelwise serve`) runs the worker in a child *process*, not a thread: a
fit is CPU work that would otherwise hold the interpreter while annotators wait for their next
item. The child stops with the server. If it dies (killed, out of memory), the server goes on
serving the last queue and starts a new one, waiting longer after each quick death.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelwise.store.folder import CONFIG_NAME, ProjectFolder

__all__ = [
    "WorkerSupervisor",
    "admin_link",
    "base_url",
    "demo_project",
    "listen",
    "run_worker_forever",
    "serve_project",
]

log = logging.getLogger("labelwise")

DEMO_TOKEN_FILE = "demo-admin-token.txt"
#: How long the demo's sign-in link lasts (a run prints a new one).
DEMO_LINK_MINUTES = 24 * 60
#: The worker yields the CPU to the server: on a small machine a fit must not slow "next".
WORKER_NICENESS = 10
#: A dead worker child is started again after this many seconds, doubled after each death up
#: to the maximum; a worker that ran for ``WORKER_STABLE_S`` starts the count again.
WORKER_RESTART_S = (1.0, 60.0)
WORKER_STABLE_S = 120.0
#: Seconds a worker child has to end its current step when the server stops, before it is
#: killed.
WORKER_STOP_S = 10.0


def run_worker_forever(
    project_dir: str,
    db_url: str | None,
    *,
    stop: threading.Event | None = None,
    scheduler: str | None = None,
) -> None:
    """The worker loop until SIGTERM, Ctrl+C or ``stop`` is set; with ``scheduler`` (see
    :func:`labelwise.scale.connect`) the pool is scored on that Dask cluster."""
    from labelwise.services.setup import open_project
    from labelwise.services.worker import run_worker

    opened = open_project(project_dir, db_url=db_url)
    stop = stop or threading.Event()
    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(WORKER_NICENESS)

    def _stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    with contextlib.ExitStack() as cluster, contextlib.suppress(KeyboardInterrupt):
        client = None
        if scheduler is not None:
            from labelwise.scale import connect

            client = cluster.enter_context(connect(scheduler))
        run_worker(opened.folder, opened.db, stop=stop, client=client)


def _worker_child(project_dir: str, db_url: str | None, scheduler: str | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    stop = threading.Event()
    parent = multiprocessing.parent_process()
    if parent is not None:
        # A server killed outright (SIGKILL, OOM) cannot stop its worker: without this the
        # orphan would live on holding the folder's lock, and the restarted server's worker
        # would wait for it forever. The parent's end of the spawn pipe closes when it dies.
        threading.Thread(
            target=_stop_with, args=(parent, stop), name="parent-watch", daemon=True
        ).start()
    run_worker_forever(project_dir, db_url, stop=stop, scheduler=scheduler)


def _stop_with(parent: Any, stop: threading.Event) -> None:
    parent.join()  # returns once the parent process is gone
    log.info("the server process is gone; the worker stops after its current cycle")
    stop.set()


class WorkerSupervisor:
    """Keeps the server's worker child running: started with the server, started again after
    it dies, stopped with the server."""

    def __init__(
        self,
        project_dir: str,
        db_url: str | None,
        scheduler: str | None = None,
        *,
        target: Callable[..., None] | None = None,
    ) -> None:
        self.args = (project_dir, db_url, scheduler)
        self.target = target or _worker_child
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=WORKER_STOP_S + 15)

    def _run(self) -> None:
        delay, longest = WORKER_RESTART_S
        spawn = multiprocessing.get_context("spawn")
        while not self._stop.is_set():
            # Not a daemon: a daemonic process may not start processes of its own, and the
            # worker starts a local Dask cluster's for ``--scheduler local``. It stops with the
            # server all the same: below, or by watching for the server's death.
            child = spawn.Process(target=self.target, args=self.args, name="labelwise-worker")
            child.start()
            began = time.monotonic()
            while child.is_alive() and not self._stop.is_set():
                child.join(timeout=0.5)
            if self._stop.is_set():
                if child.is_alive():
                    child.terminate()  # SIGTERM: it finishes its current step, then exits
                    child.join(timeout=WORKER_STOP_S)
                if child.is_alive():
                    # A fit can run for minutes: the server does not outlive it. Killing a
                    # worker mid-fit changes nothing served (the next one sweeps its files).
                    log.warning("the worker did not stop within %.0f s: killing it", WORKER_STOP_S)
                    child.kill()
                    child.join(timeout=10)
                return
            ran = time.monotonic() - began
            if ran >= WORKER_STABLE_S:
                delay = WORKER_RESTART_S[0]
            log.warning(
                "the worker process exited (code %s) after %.0f s; starting a new one in %.0f s",
                child.exitcode,
                ran,
                delay,
            )
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, longest)


def _bind(config: Any) -> Any:
    """uvicorn's own listening socket for ``config``; a port in use (or an unknown host) is
    refused in one line before anything else starts, where uvicorn would log it and exit."""
    from labelwise.exceptions import InvalidParameterError

    said: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        said.append(record.getMessage())
        return False

    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(keep)
    # On failure uvicorn exits without closing the socket it made; it goes when its exception
    # does, at the end of the except block, with a ResourceWarning that is not ours to show.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return config.bind_socket()
        except SystemExit:
            pass
        finally:
            uvicorn_log.removeFilter(keep)
    why = said[-1] if said else "the address cannot be used"
    raise InvalidParameterError(
        f"cannot listen on {config.host}:{config.port} ({why}); choose another with --port"
    )


def listen(host: str, port: int) -> Any:
    """A socket listening on ``host:port`` (port 0: any free one), or one line saying why not.

    Bound before anything is printed or started, so that a link printed is a link that works.
    """
    import uvicorn

    from labelwise.exceptions import InvalidParameterError

    if not 0 <= port <= 65535:
        raise InvalidParameterError(f"--port must be 0 to 65535, not {port}")
    sock = _bind(uvicorn.Config(_no_app, host=host, port=port, log_level="warning"))
    sock.listen(2048)  # from now on connections wait for the server rather than fail
    return sock


async def _no_app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    """Stands for the app while a socket is bound (uvicorn's config needs one)."""


def base_url(listening: Any) -> str:
    """The address a browser on this machine (or, for a server on every interface, on the
    network) reaches a listening socket at."""
    import platform

    host, port = listening.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = platform.node() or "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def serve_project(
    project_dir: str,
    *,
    db_url: str | None,
    listening: Any,
    with_worker: bool,
    scheduler: str | None = None,
    announce: Callable[[Any, str], None] | None = None,
) -> None:
    """Serve one project folder with uvicorn on the socket ``listening`` (see :func:`listen`),
    and its worker process, which scores the pool on the Dask cluster ``scheduler`` names, if
    any. ``announce(opened_project, base_url)`` runs once the project is open, before serving.
    """
    import uvicorn

    from labelwise.exceptions import LabelwiseError
    from labelwise.server import ServerConfig, create_app
    from labelwise.services.setup import open_project

    try:
        opened = open_project(project_dir, db_url=db_url)
        host, port = listening.getsockname()[:2]
        config = uvicorn.Config(
            create_app(ServerConfig(opened)), host=host, port=port, log_level="warning"
        )
        if announce is not None:
            announce(opened, base_url(listening))
        worker = WorkerSupervisor(project_dir, db_url, scheduler) if with_worker else None
        if worker is not None:
            worker.start()
        try:
            server = uvicorn.Server(config)
            server.run(sockets=[listening])
            if not server.started:
                raise LabelwiseError("the server did not start: see the messages above")
        finally:
            if worker is not None:
                worker.stop()
    finally:
        listening.close()


def admin_link(opened: Any, base: str, *, token: str | None = None, minutes: int = 30) -> str:
    """A one-time sign-in link to ``base`` for the admin holding ``token`` or, without one,
    the project's first admin who may sign in ("" when there is none)."""
    from sqlalchemy import select

    from labelwise.store.annotators import authenticate
    from labelwise.store.models import Annotator
    from labelwise.store.sign_ins import link_url, new_link

    with opened.db.write() as session:
        if token is not None:
            admin = authenticate(session, token, project_id=opened.project_id)
        else:
            admin = session.scalar(
                select(Annotator)
                .where(
                    Annotator.project_id == opened.project_id,
                    Annotator.role == "admin",
                    Annotator.disabled.is_(False),
                )
                .order_by(Annotator.id)
                .limit(1)
            )
        if admin is None:
            return ""
        return link_url(base, new_link(session, admin, minutes=minutes))


def demo_project(directory: Path, *, multi_label: bool = False) -> tuple[Path, str]:
    """The demo folder (made on first use from the bundled SMS collection, or for
    ``multi_label`` from the bundled GoEmotions comments) and its admin's token, kept in a file
    inside the folder (owner-only) so that each run signs the same admin in (with a new
    one-time link) and scripts may call the API; a real project never stores a token."""
    import secrets

    from labelwise.datasets import bundled_path
    from labelwise.exceptions import AuthenticationError, InvalidParameterError
    from labelwise.services.setup import init_project, open_project
    from labelwise.store.annotators import authenticate, create_annotator
    from labelwise.store.projects import ProjectSettings, get_project, settings_of

    token_file = directory / DEMO_TOKEN_FILE
    if (directory / CONFIG_NAME).exists():
        ProjectFolder.open(directory)
        opened = open_project(directory)
        with opened.db.read() as session:
            found = settings_of(get_project(session, project_id=opened.project_id)).multi_label
        if found != multi_label:
            opened.db.dispose()
            kind = "multi-label" if found else "single-label"
            raise InvalidParameterError(
                f"{directory} holds a {kind} project: run the demo "
                f"{'with' if found else 'without'} --multi-label there, or choose another --dir"
            )
        token = token_file.read_text().strip() if token_file.exists() else ""
    elif multi_label:
        opened, token = init_project(
            directory,
            bundled_path("goemotions"),
            name="Emotions (multi-label demo)",
            settings=ProjectSettings(multi_label=True),
        )
    else:
        opened, token = init_project(directory, bundled_path("sms-spam"), name="SMS spam (demo)")
    with opened.db.write() as session:
        try:
            authenticate(session, token, project_id=opened.project_id)
        except AuthenticationError:  # no token file, or its token was reissued
            project = get_project(session, project_id=opened.project_id)
            _, token = create_annotator(
                session, project, name=f"admin-{secrets.token_hex(2)}", role="admin"
            )
    opened.db.dispose()
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return directory, token
