"""Connecting to a Dask cluster: a scheduler's address, or worker processes started here.

``dask[distributed]`` is an optional dependency (``pip install labelwise[scale]``), imported
only when a cluster is asked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from labelwise.exceptions import InvalidParameterError

__all__ = ["connect", "parse_scheduler", "require_distributed"]

_LOCAL = re.compile(r"local(?::(\d+))?")
_ADDRESS = re.compile(r"(tcp|tls|ws|wss|ucx)://\S+")


def require_distributed() -> ModuleType:
    """The ``distributed`` module, or an error that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise InvalidParameterError(
            "scoring on a Dask cluster needs dask[distributed]: pip install labelwise[scale]"
        ) from None
    return distributed


def parse_scheduler(text: str) -> tuple[str, int | None]:
    """``("local", N or None)`` for a cluster started here, or ``(address, None)``.

    Accepted: ``local`` (one worker process per CPU), ``local:N`` (N worker processes) and a
    scheduler address such as ``tcp://10.0.0.5:8786``.
    """
    value = text.strip() if isinstance(text, str) else ""
    local = _LOCAL.fullmatch(value)
    if local:
        n = int(local.group(1)) if local.group(1) else None
        if n is not None and n < 1:
            raise InvalidParameterError(f"--scheduler local:N needs N >= 1, got {text!r}")
        return "local", n
    if _ADDRESS.fullmatch(value):
        return value, None
    raise InvalidParameterError(
        f"--scheduler must be local, local:N or a scheduler address such as "
        f"tcp://host:8786, got {text!r}"
    )


@contextmanager
def connect(scheduler: str, *, timeout: float = 30.0) -> Iterator[Any]:
    """A ``distributed.Client`` for the duration of the block.

    ``local`` or ``local:N`` starts a ``LocalCluster`` of N worker processes (one per CPU by
    default) with one thread each, stopped when the block ends; an address connects to a
    running scheduler (``dask scheduler`` and ``dask worker`` started elsewhere), waiting at
    most ``timeout`` seconds.
    """
    kind, n_workers = parse_scheduler(scheduler)
    distributed = require_distributed()
    if kind == "local":
        cluster = distributed.LocalCluster(
            n_workers=n_workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: never clash with another cluster
        )
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = distributed.Client(kind, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise InvalidParameterError(f"cannot reach the Dask scheduler at {kind}: {exc}") from None
    with client:
        yield client
