"""Representations: from a :class:`~labelwise.io.load.Dataset`'s items to a feature matrix.

A ``features`` word (:mod:`labelwise.features.spec`) names the representation; each kind of
item has a default (:data:`DEFAULT_FEATURES`):

* text: TF-IDF over words and word pairs (``tfidf``, sparse CSR float32), pretrained
  embeddings (``embedding[:EMBEDDER]``, dense float32, :mod:`labelwise.features.embedders`),
  both side by side (``tfidf+embedding``, the default: best on average over the text sets of
  the benchmark, and never clearly below TF-IDF), or ``auto``: both, with every fit choosing
  among them (:class:`~labelwise.models.auto.AutoRepresentation`);
* image: an image embedder's features (``embedding[:EMBEDDER]``; by default ``randconv``,
  random convolutional features that need no download), or pixels flattened to float32 in
  [0, 1] (``pixels``);
* tabular: the matrix itself as float64 (dense stays dense, sparse stays CSR), checked finite.

Text features have rows of unit L2 norm (all zero for an item with nothing to represent):
they need no further scaling. Tabular columns, pixels and raw image features are standardised
by the model with statistics of the whole pool
(:class:`labelwise.features.scaling.PoolScaler`). Fitting a featurizer on
the whole pool, labeled or not, is legitimate in pool-based active learning: it never sees a
label.
"""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator, clone

from labelwise.exceptions import InvalidParameterError
from labelwise.features.combined import Blocks, CombinedFeaturizer, EmbeddingFeaturizer, combine
from labelwise.features.embedders import (
    DEFAULT_TEXT_EMBEDDER,
    Embedder,
    available_embedders,
    make_embedder,
)
from labelwise.features.image import PixelFeaturizer
from labelwise.features.spec import DEFAULT_FEATURES, FeatureSpec, parse_features
from labelwise.features.tabular import TabularFeaturizer
from labelwise.features.text import TfidfFeaturizer
from labelwise.io.load import Dataset

__all__ = [
    "DEFAULT_FEATURES",
    "DEFAULT_TEXT_EMBEDDER",
    "Blocks",
    "CombinedFeaturizer",
    "Embedder",
    "EmbeddingFeaturizer",
    "FeatureSpec",
    "PixelFeaturizer",
    "TabularFeaturizer",
    "TfidfFeaturizer",
    "available_embedders",
    "combine",
    "feature_blocks",
    "featurize",
    "make_embedder",
    "make_featurizer",
    "parse_features",
]

# The names an earlier release pickled its fitted featurizers under (features/featurizer.joblib
# in a project folder): kept so those files still load.
_TextFeaturizer = TfidfFeaturizer
_ImageFeaturizer = PixelFeaturizer
_TabularFeaturizer = TabularFeaturizer

_BASE_FEATURIZERS: dict[str, type[BaseEstimator]] = {
    "tfidf": TfidfFeaturizer,
    "pixels": PixelFeaturizer,
    "columns": TabularFeaturizer,
}


def make_featurizer(kind: str, features: str | None = None, **options: Any) -> BaseEstimator:
    """An unfitted featurizer for items of ``kind`` ("text", "image" or "tabular").

    Parameters
    ----------
    kind : str
    features : str, optional
        A ``features`` word (:func:`~labelwise.features.spec.parse_features`); the kind's
        default when omitted.
    **options
        TF-IDF parameters (``max_features``, ``min_df``, ``max_df``, ``ngram_range``,
        ``sublinear_tf``, ``strip_accents``, ``lowercase``, ``stop_words``, ``dtype``) when
        TF-IDF is part of the representation; other representations take none.
    """
    spec = parse_features(kind, features)
    base = None
    if spec.base is not None:
        base = _BASE_FEATURIZERS[spec.base]()
        accepted = base.get_params()
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise InvalidParameterError(
                f"unknown option(s) {unknown} for the {spec.base} featurizer; "
                f"accepted: {sorted(accepted) or 'none'}"
            )
        base.set_params(**options)
    elif options:
        raise InvalidParameterError(
            f"features {spec.name!r} take no options, got {sorted(options)}"
        )
    if spec.embedder is None:
        assert base is not None
        return base
    embedding = EmbeddingFeaturizer(spec.embedder)
    if base is None:
        return embedding
    return CombinedFeaturizer([("embedding", embedding), (spec.base or "base", base)])


def featurize(
    dataset: Dataset, featurizer: Any = None, *, features: str | None = None
) -> tuple[Any, Any]:
    """Fit a featurizer on all of ``dataset``'s items and return ``(matrix, fitted_featurizer)``.

    ``featurizer`` is any scikit-learn transformer over ``dataset.items``; it is cloned, never
    fitted in place. By default, :func:`make_featurizer` of the dataset's kind and
    ``features`` (the kind's default representation when that is None too). The matrix has
    shape (len(dataset), n_features): CSR float32 for TF-IDF (and for TF-IDF beside an
    embedding), float32 for pixels and embeddings, float64 (dense or CSR) for tabular data.
    """
    if featurizer is None:
        featurizer = make_featurizer(dataset.kind, features)
    elif features is not None:
        raise InvalidParameterError("give a featurizer or a features word, not both")
    elif not hasattr(featurizer, "fit_transform"):
        raise InvalidParameterError(
            f"featurizer must be a scikit-learn transformer with fit_transform, "
            f"got {type(featurizer).__name__}"
        )
    fitted = clone(featurizer)
    return fitted.fit_transform(dataset.items), fitted


def feature_blocks(featurizer: Any, n_features: int) -> Blocks:
    """Where each representation's columns are in what ``featurizer`` (fitted) makes: its
    ``blocks_`` when it combines several, else one block of all ``n_features`` columns named
    after it."""
    blocks = getattr(featurizer, "blocks_", None)
    if blocks is not None:
        return dict(blocks)
    names = {TfidfFeaturizer: "tfidf", PixelFeaturizer: "pixels", EmbeddingFeaturizer: "embedding"}
    return {names.get(type(featurizer), "columns"): (0, int(n_features))}
