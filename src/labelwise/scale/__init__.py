"""Past one machine: a pool stored as partitioned files, scored on a Dask cluster.

>>> from labelwise.scale import connect, score_partitioned, write_partitioned
>>> pool = write_partitioned(X, "pool/", rows_per_partition=250_000)
>>> with connect("tcp://scheduler:8786") as client:          # or "local:4"
...     batch = score_partitioned(pool, model, client=client, labeled=rows, y_labeled=y,
...                               strategy="default", batch_size=100, random_state=0)

The batch equals what :func:`labelwise.strategies.query.query` returns for the same model, seed and
strategy on one machine (see :mod:`labelwise.scale.score` for the exact contract). The workers score
partitions in place and keep their top candidates; the client merges them and runs the
strategy's selection among them.

Modules: :mod:`~labelwise.scale.partitions` (the folder format, read),
:mod:`~labelwise.scale.writing` (written), :mod:`~labelwise.scale.cluster` (connecting),
:mod:`~labelwise.scale.shards` (what workers run), :mod:`~labelwise.scale.topk` (the exact
merge), :mod:`~labelwise.scale.backend` (what strategies read of the pool),
:mod:`~labelwise.scale.score` (the query). Importing this package does not import Dask.
"""

from labelwise.scale.cluster import connect, parse_scheduler
from labelwise.scale.partitions import Partition, PartitionedPool, open_partitioned
from labelwise.scale.score import score_partitioned, supports
from labelwise.scale.writing import ensure_partitioned, write_partitioned

__all__ = [
    "Partition",
    "PartitionedPool",
    "connect",
    "ensure_partitioned",
    "open_partitioned",
    "parse_scheduler",
    "score_partitioned",
    "supports",
    "write_partitioned",
]
