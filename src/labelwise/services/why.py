"""What a queued item carries to the annotator: the "why this item" panel, computed with the queue.

The worker ranks the pool (:func:`labelwise.strategies.query.query`); this module adds what
the ranking alone does not say, so showing it never slows "next":

* the nearest labeled items (:func:`queue_entries`), measured where similarity means something:
  the embedding when the project has one, standardised columns for tables, TF-IDF or pixels
  otherwise (:func:`neighbour_space`). A neighbour is shown only if it is close -- more similar
  than 99 % of random pairs of items in that space (:func:`similarity_floor`) -- so a short
  text is never shown beside "neighbours" it shares nothing with;
* what drives the prediction (:func:`labelwise.services.drivers.explanations`, its own module):
  the exact word weights of a linear TF-IDF model, leave-one-word-out influence for any other
  text model, field contributions for tables (exact for linear models, SHAP for tree
  ensembles), an occlusion map for images;
* the open items that are the same item in practice (:func:`duplicate_groups`), which the
  annotator may give the same answer after confirming: found by similarity in the feature
  space, then kept only when they are the same item in practice -- texts the same once case,
  punctuation and spacing are folded (:func:`near_identical`), images with (almost) the same
  pixels, table rows with the same values: two items that are merely alike are not one;
* what a semi-supervised model made up (:func:`pseudo_labels`), for the dashboard.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from labelwise.features.scaling import PoolStatistics, pool_statistics
from labelwise.models.explain import near_duplicates, nearest_labeled
from labelwise.pool import Matrix, take_rows
from labelwise.services.drivers import DRIVER_TEXT, item_pixels
from labelwise.store.features import ProjectFeatures, item_preview
from labelwise.store.versions import QueuedItem
from labelwise.strategies.query import Batch

__all__ = [
    "ItemSource",
    "duplicate_groups",
    "near_identical",
    "neighbour_space",
    "pseudo_labels",
    "queue_entries",
    "similarity_floor",
    "text_key",
]

#: Characters of an item shown beside a neighbour in the "why" panel.
PREVIEW = 160
#: Fields of a table's neighbour shown in the "why" panel.
FIELDS_SHOWN = 12
#: Examples of pseudo-labels listed on the dashboard.
PSEUDO_EXAMPLES = 20
#: Random pairs compared to learn how similar "close" is in a representation.
FLOOR_PAIRS = 4000
#: Share of random pairs a shown neighbour must be more similar than.
FLOOR_QUANTILE = 0.99


class ItemSource(Protocol):
    """The items of a project by feature row, as this module reads them: the project's own
    (:class:`labelwise.store.pool_index.PoolItems`, read on demand from the database) or any
    other holding the same answers (a pool in memory).

    Attributes
    ----------
    project
        What the items are: its ``kind`` ("text", "image", "tabular").
    folder
        The project folder (images, the fitted featurizer).
    """

    project: Any
    folder: Any

    def __getitem__(self, row: int) -> Any:
        """The item at ``row``: its ``id`` and its ``content``."""

    def prefetch(self, rows: Iterable[int]) -> None:
        """Read the items of ``rows`` at once (a hint: indexing reads them anyway)."""

    def preview(self, row: int, limit: int) -> str:
        """The item at ``row`` in a line of at most ``limit`` characters."""

    def fields(self, row: int) -> dict[str, float]:
        """A tabular item's fields by name, in column order."""

    def field_names(self) -> tuple[str, ...]:
        """A tabular project's field names, in column order."""


def similarity_floor(
    space: Any, rng: np.random.Generator, *, pairs: int = FLOOR_PAIRS
) -> float | None:
    """The cosine similarity that only ``1 - FLOOR_QUANTILE`` of random pairs of items reach
    in ``space``: what "close" means there. None for a pool of fewer than two items."""
    n = space.shape[0]
    if n < 2:
        return None
    left = rng.integers(0, n, size=pairs)
    right = (left + rng.integers(1, n, size=pairs)) % n  # never an item with itself
    a, b = _unit(take_rows(space, left)), _unit(take_rows(space, right))
    if sp.issparse(a):
        sims = np.asarray(sp.csr_matrix(a).multiply(b).sum(axis=1)).ravel()
    else:
        sims = np.einsum("ij,ij->i", a, b)
    return float(np.quantile(sims, FLOOR_QUANTILE))


def _unit(rows: Matrix) -> Matrix:
    from sklearn.preprocessing import normalize

    return normalize(rows if sp.issparse(rows) else np.asarray(rows, dtype=np.float64))


def queue_entries(
    batch: Batch,
    space: Any,
    rows_to_items: ItemSource,
    labeled_rows: np.ndarray,
    labels_by_row: dict[int, str],
    *,
    floor: float | None = None,
    explained: dict[int, dict[str, Any]] | None = None,
    duplicates: dict[int, list[tuple[int, float]]] | None = None,
) -> list[QueuedItem]:
    """The queue's entries for ``batch``, each reason with its nearest labeled items (those at
    ``floor`` or above), its explanation and its near-duplicates."""
    neighbours, similarity = nearest_labeled(space, batch.indices, labeled_rows, k=3)
    rows_to_items.prefetch(
        [*batch.indices.tolist(), *neighbours.ravel().tolist()]
        + [d for found in (duplicates or {}).values() for d, _ in found]
    )
    # "Unlike anything labeled so far" is relative: how close labeled items usually are to
    # their nearest labeled neighbour, in this representation.
    typical = _typical_closeness(space, labeled_rows)
    queue: list[QueuedItem] = []
    for pos, (row, reason) in enumerate(zip(batch.indices, batch.reasons, strict=True)):
        explanation = (explained or {}).get(int(row)) or {}
        # A table's fields come in the order of what drives the prediction, so the columns
        # shown beside a neighbour are those that matter for this item.
        drivers = explanation.get("drivers") or {}
        first = [str(t) for t, _ in drivers.get("terms", [])]
        closest = float(similarity[pos][0]) if similarity.shape[1] else None
        found = (duplicates or {}).get(int(row))
        told = replace(
            reason,
            neighbors=tuple(
                {
                    "item_id": rows_to_items[int(n)].id,
                    "label": labels_by_row[int(n)],
                    "similarity": round(float(s), 4),
                    **_shown(rows_to_items, int(n), first),
                }
                for n, s in zip(neighbours[pos], similarity[pos], strict=True)
                if floor is None or s >= floor
            ),
            neighbors_floor=None if floor is None else round(floor, 4),
            far_from_labeled=bool(
                closest is not None
                and (
                    (typical is not None and closest < 0.5 * typical)
                    or (floor is not None and closest < floor)
                )
            ),
            # What drives the prediction: "drivers" or "occlusion".
            **explanation,
            # Near-duplicates the annotator may give the same answer (after confirming).
            duplicates=None
            if not found
            else tuple(
                {
                    "item_id": rows_to_items[d].id,
                    "similarity": round(sim, 4),
                    **_shown(rows_to_items, d, first),
                }
                for d, sim in found
            ),
        )
        item = rows_to_items[int(row)]
        queue.append(
            QueuedItem(
                item_id=item.id,
                rank=pos,
                kind=told.type.value,
                utility=told.utility,
                predicted=told.predicted,
                reason=told,
            )
        )
    return queue


def _shown(rows_to_items: ItemSource, row: int, first: Sequence[str] = ()) -> dict[str, Any]:
    """An item beside the one to label: its preview line and, for a table, its fields as
    ``[name, value]`` pairs (``first`` ones first, then column order; at most
    :data:`FIELDS_SHOWN`, with ``fields_left_out`` saying how many more there are)."""
    if rows_to_items.project.kind != "tabular":
        return {"preview": rows_to_items.preview(row, PREVIEW)}
    fields = rows_to_items.fields(row)
    names = list(dict.fromkeys([*(n for n in first if n in fields), *fields]))
    return {
        "preview": item_preview(fields, PREVIEW),
        "fields": [[n, fields[n]] for n in names[:FIELDS_SHOWN]],
        "fields_left_out": max(0, len(names) - FIELDS_SHOWN),
    }


def _typical_closeness(X: Any, labeled_rows: np.ndarray, sample: int = 500) -> float | None:
    """Median similarity of a labeled item to its nearest other labeled item (on a sample)."""
    if len(labeled_rows) < 3:
        return None
    rows = labeled_rows[:: max(1, len(labeled_rows) // sample)]
    _, sim = nearest_labeled(X, rows, labeled_rows, k=2)
    return float(np.median(sim[:, 1])) if sim.shape[1] > 1 else None


def pseudo_labels(model: Any, rows: np.ndarray, rows_to_items: ItemSource) -> dict[str, Any] | None:
    """What a semi-supervised model made up: how many items got a pseudo-label, counts per
    class, mean confidence, and the most confident examples for the dashboard. A multi-label
    model decides each label of an item apart ("insult", "not insult"): ``by_class`` counts
    those decisions, ``count`` the items they are on. None for other models."""
    made = getattr(model, "pseudo_labels_", None)
    if made is None:
        return None
    by_class = Counter(str(label) for _, label, _ in made)
    rows_to_items.prefetch(int(rows[pos]) for pos, _, _ in made[:PSEUDO_EXAMPLES])
    return {
        "count": len({pos for pos, _, _ in made}),
        "from": len(rows),
        "by_class": dict(by_class),
        "mean_confidence": float(np.mean([c for *_, c in made])) if made else None,
        "examples": [
            {
                "item_id": rows_to_items[int(rows[pos])].id,
                "label": str(label),
                "confidence": round(conf, 4),
                "preview": rows_to_items.preview(int(rows[pos]), PREVIEW),
            }
            for pos, label, conf in made[:PSEUDO_EXAMPLES]
        ],
    }


# ------------------------------------------------------------------------------ the spaces


class Standardized:
    """A dense pool seen with every column standardised, row by row as rows are read.

    ``space[rows]`` is ``StandardScaler().fit_transform(X)[rows]`` (a constant column is
    left unscaled, as there) in ``X``'s float precision, with the pool's statistics
    (:func:`~labelwise.features.scaling.pool_statistics`, one pass a chunk at a time): only
    the rows read are ever transformed, so a memory-mapped pool of millions of rows is never
    copied.
    """

    def __init__(self, X: Any, statistics: PoolStatistics | None = None) -> None:
        self.X = X
        self.shape = X.shape
        # Rows come out in the pool's precision (float32 pools stay float32: half the memory
        # traffic when all open rows are compared with the queue), never below float32.
        self.dtype = np.result_type(X.dtype, np.float32)
        stats = statistics if statistics is not None else pool_statistics(X)
        self.mean = stats.mean
        self.scale = stats.scale

    def __getitem__(self, rows: Any) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.ndim == 1 and len(rows) > 1 and rows[-1] - rows[0] == len(rows) - 1:
            block = self.X[int(rows[0]) : int(rows[-1]) + 1]  # a run of rows: read in place
        else:
            block = self.X[rows]
        values = np.array(block, dtype=self.dtype)  # a copy: the pool is read-only
        values -= self.mean.astype(self.dtype)
        values /= self.scale.astype(self.dtype)
        return values


def neighbour_space(features: ProjectFeatures, statistics: PoolStatistics | None = None) -> Any:
    """Where "most similar labeled item" is measured: the embedding when there is one (it
    carries meaning), tabular columns standardised (or the column with the largest numbers
    alone would decide), TF-IDF and pixels as they are."""
    embedding = features.part("embedding")
    if embedding is not None:
        return embedding
    X = features.X
    if features.spec.kind != "tabular":
        return X
    if sp.issparse(X):
        from sklearn.preprocessing import StandardScaler

        return StandardScaler().fit_transform(sp.csr_matrix(X).toarray())
    return Standardized(X, statistics)


# -------------------------------------------------------------------------- near-duplicates

_NOT_WORD = re.compile(r"[\W_]+")
_APOSTROPHES = re.compile(r"['\u2019`]")


def text_key(text: str) -> str:
    """A text with case, Unicode form, punctuation and runs of spaces folded away: what two
    copies of the same message share."""
    folded = unicodedata.normalize("NFKC", text[:DRIVER_TEXT]).casefold()
    return " ".join(_NOT_WORD.sub(" ", _APOSTROPHES.sub("", folded)).split())


def near_identical(a: str, b: str) -> bool:
    """Whether two texts are the same text in practice: equal once case, Unicode form,
    punctuation and spacing are folded (:func:`text_key`). Any change of a word or a number
    makes them different texts -- "has pneumonia" and "has no pneumonia" are 94 % alike
    character by character, and a reordered sentence is one embedding -- so nothing looser is
    safe for one answer given to many items."""
    return text_key(a) == text_key(b)


def duplicate_groups(
    features: ProjectFeatures,
    space: Any,
    rows: np.ndarray,
    among: np.ndarray,
    rows_to_items: ItemSource,
    *,
    threshold: float,
    k: int,
) -> dict[int, list[tuple[int, float]]]:
    """For each of ``rows``, up to ``k`` open rows of ``among`` offered as its near-duplicates
    (``(row, similarity)``, most similar first): at cosine similarity ``threshold`` or more in
    ``space`` (:func:`labelwise.models.explain.near_duplicates`), then the same item in practice
    (:func:`_same_item_test`). Rows with none are left out; ``k`` 0 offers none."""
    if not k:
        return {}
    found = near_duplicates(space, rows, among, threshold=threshold, k=k)
    out = {int(r): f for r, f in zip(rows, found, strict=True) if f}
    if not out:
        return out
    rows_to_items.prefetch([*out, *(d for group in out.values() for d, _ in group)])
    same = _same_item_test(features, rows_to_items)
    checked = {}
    for row, group in out.items():
        kept = [(d, s) for d, s in group if same(row, d)]
        if kept:
            checked[row] = kept
    return checked


#: Largest mean absolute difference of two images' pixels (in [0, 1]) for them to count as one
#: image: a re-encoding or a speck, not a second X-ray (two chest X-rays of PneumoniaMNIST
#: differ by 0.05 or more; their raw pixels' cosine similarity is 0.98 for almost any pair).
IMAGE_DUPLICATE_MAD = 2 / 255
#: Relative tolerance within which two rows of a table are the same row.
TABLE_DUPLICATE_RTOL = 1e-6


def _same_item_test(
    features: ProjectFeatures, rows_to_items: ItemSource
) -> Callable[[int, int], bool]:
    """Whether two rows are the same item in practice, by kind: texts equal once folded
    (:func:`near_identical`), images whose pixels differ by at most
    :data:`IMAGE_DUPLICATE_MAD` on average, table rows equal within
    :data:`TABLE_DUPLICATE_RTOL`. Similar is not enough: one answer goes to all of them."""
    kind = features.spec.kind
    if kind == "text":
        return lambda a, b: near_identical(rows_to_items[a].content, rows_to_items[b].content)
    if kind == "tabular":
        X = features.X

        def same_row(a: int, b: int) -> bool:
            x, y = np.asarray(X[a], dtype=np.float64), np.asarray(X[b], dtype=np.float64)
            return bool(np.allclose(x, y, rtol=TABLE_DUPLICATE_RTOL, atol=1e-12))

        return same_row
    folder = rows_to_items.folder
    cache: dict[int, np.ndarray] = {}

    def pixels(row: int) -> np.ndarray:
        if row not in cache:
            cache[row] = item_pixels(folder, rows_to_items, row)
        return cache[row]

    def same_image(a: int, b: int) -> bool:
        x, y = pixels(a), pixels(b)
        return x.shape == y.shape and float(np.abs(x - y).mean()) <= IMAGE_DUPLICATE_MAD

    return same_image
