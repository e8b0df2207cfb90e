"""Embedding features, and several representations side by side in one matrix.

* :class:`EmbeddingFeaturizer` embeds items with a registered :class:`~labelwise.features.
  embedders.Embedder`, a batch at a time (nothing to fit: the model is pretrained).
* :class:`CombinedFeaturizer` puts the outputs of several featurizers side by side, each a
  named block of columns (:func:`combine`): ``tfidf+embedding`` is the embedding block, then
  the TF-IDF block. TF-IDF and embedding rows are each of unit norm, so neither drowns the
  other; the combined row is scaled to unit norm again (each block then weighs 1/sqrt(2)),
  so it too needs no further scaling (:mod:`labelwise.features.scaling`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.preprocessing import normalize as sk_normalize

from labelwise.features.embedders import make_embedder

__all__ = ["Blocks", "CombinedFeaturizer", "EmbeddingFeaturizer", "combine", "embed_in_batches"]

#: Column blocks of a combined matrix: name -> (first column, end column).
Blocks = dict[str, tuple[int, int]]

#: Items embedded per call by default.
EMBED_BATCH = 1024


def embed_in_batches(
    embed: Callable[[Any], NDArray[np.float32]],
    items: Any,
    dim: int,
    *,
    batch_size: int = EMBED_BATCH,
    on_batch: Callable[[int], None] | None = None,
) -> NDArray[np.float32]:
    """``embed`` applied to consecutive batches of ``items``, shape (len(items), dim).

    ``on_batch(n)`` is called after each batch with the number of items it held (progress).
    """
    n = len(items)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, batch_size):
        batch = items[start : start + batch_size]
        out[start : start + len(batch)] = embed(batch)
        if on_batch is not None:
            on_batch(len(batch))
    return out


class EmbeddingFeaturizer(TransformerMixin, BaseEstimator):
    """Items to their embeddings by a registered embedder: float32 rows of unit norm.

    Parameters
    ----------
    embedder : str
        Registry name (see :func:`labelwise.features.embedders.available_embedders`). Only
        the name is kept: a pickled featurizer loads the model again where it is unpickled.
    batch_size : int
        Items embedded per call.
    """

    def __init__(self, embedder: str = "wordllama", batch_size: int = EMBED_BATCH) -> None:
        self.embedder = embedder
        self.batch_size = batch_size

    def fit(self, X: Any, y: Any = None) -> EmbeddingFeaturizer:
        model = make_embedder(self.embedder)
        self.n_features_out_ = int(model.dim)
        return self

    def transform(self, X: Any) -> NDArray[np.float32]:
        model = make_embedder(self.embedder)
        items = list(X) if model.modality == "text" else np.asarray(X)
        return embed_in_batches(model.embed, items, model.dim, batch_size=self.batch_size)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"embedding{i}" for i in range(self.n_features_out_)], dtype=object)


def combine(blocks: Sequence[tuple[str, Any]], *, normalize: bool = True) -> tuple[Any, Blocks]:
    """Matrices with the same rows side by side, and where each one's columns are.

    Returns a CSR matrix when any block is sparse (float32 if every block is), else a dense
    array, with rows scaled to unit L2 norm when ``normalize`` (all-zero rows stay zero); and
    ``{name: (start, stop)}`` in column order.
    """
    if not blocks:
        raise ValueError("combine() needs at least one block")
    where: Blocks = {}
    start = 0
    for name, block in blocks:
        where[name] = (start, start + int(block.shape[1]))
        start += int(block.shape[1])
    matrices = [m for _, m in blocks]
    if len(matrices) == 1:
        return matrices[0], where
    dtype = np.result_type(*(m.dtype for m in matrices))
    if any(sp.issparse(m) for m in matrices):
        parts = [m if sp.issparse(m) else sp.csr_matrix(np.asarray(m)) for m in matrices]
        matrix: Any = sp.hstack(parts, format="csr", dtype=dtype)
    else:
        matrix = np.hstack([np.asarray(m, dtype=dtype) for m in matrices])
    return (sk_normalize(matrix, copy=False) if normalize else matrix), where


class CombinedFeaturizer(TransformerMixin, BaseEstimator):
    """Several featurizers' outputs side by side (see :func:`combine`).

    Parameters
    ----------
    parts : list of (name, transformer)
        In column order. Each is cloned and fitted on the same items.

    Attributes
    ----------
    blocks_ : dict of name -> (start, stop)
        Where each part's columns are.
    """

    def __init__(self, parts: list[tuple[str, Any]]) -> None:
        self.parts = parts

    def fit(self, X: Any, y: Any = None) -> CombinedFeaturizer:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        self.fitted_ = [(name, clone(part)) for name, part in self.parts]
        matrix, self.blocks_ = combine(
            [(name, part.fit_transform(X)) for name, part in self.fitted_]
        )
        return matrix

    def transform(self, X: Any) -> Any:
        matrix, _ = combine([(name, part.transform(X)) for name, part in self.fitted_])
        return matrix

    def part(self, name: str) -> Any:
        """The fitted featurizer of the block ``name``."""
        return dict(self.fitted_)[name]
