"""What drives a model's prediction for a queued item: the "drivers" and "occlusion" entries
of its reason (:func:`explanations`), computed with the queue by the worker beside the rest of the
"why this item" panel (:mod:`labelwise.services.why`).

* text, a linear model on TF-IDF alone: the words with their exact contributions and their
  spans in the text (:func:`_tfidf_drivers`);
* text, any other model or representation: leave-one-word-out influence, the texts scored as
  the project's items are featurized (:func:`text_scorer`, :func:`_left_out_words`);
* tables: field contributions (exact for linear models, SHAP for tree ensembles);
* images: an occlusion map, on pixels or through the embedder (:func:`_occlusions`), the images
  read by :func:`item_pixels`.

A multi-label prediction is explained for the label the model is least sure of, toward it or
away from it (:mod:`labelwise.models.explain`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np

from labelwise.exceptions import NotFoundError
from labelwise.features import combine, make_embedder
from labelwise.models.explain import (
    linear_contributions,
    occlusion_map,
    term_weights,
    tree_contributions,
    vectorizer_highlights,
    word_influence,
)
from labelwise.models.registry import ModelOutputs, model_outputs
from labelwise.store.embeddings import load_image
from labelwise.store.features import ProjectFeatures
from labelwise.store.folder import ProjectFolder

if TYPE_CHECKING:
    from labelwise.services.why import ItemSource

__all__ = ["explanations", "item_pixels", "text_scorer"]

#: Words (or fields) shown as the drivers of a prediction.
DRIVERS = 8
#: How much of a text is searched for them, and how many marks the text gets at most.
DRIVER_TEXT = 20_000
DRIVER_SPANS = 300


def _featurizer(folder: ProjectFolder) -> Any:
    """The fitted TF-IDF or pixel featurizer saved beside the cache, or None."""
    try:
        path = folder.loadable("features/featurizer.joblib", folder.features_dir)
    except NotFoundError:
        return None  # a file out of the folder is refused: that error goes on
    try:
        return joblib.load(path)
    except Exception:  # damaged: explanations are optional (the next cache build mends it)
        return None


def text_scorer(
    features: ProjectFeatures, folder: ProjectFolder, model: Any
) -> Callable[[Sequence[str]], ModelOutputs] | None:
    """Texts to ``model``'s outputs on them, featurized as the project's items are (None when
    a part's featurizer is missing)."""
    spec = features.spec
    tfidf = _featurizer(folder) if spec.base is not None else None
    if spec.base is not None and tfidf is None:
        return None
    embedder = make_embedder(spec.embedder) if spec.embedder is not None else None

    def score(texts: Sequence[str]) -> ModelOutputs:
        parts: list[tuple[str, Any]] = []
        if embedder is not None:
            parts.append(("embedding", embedder.embed(list(texts))))
        if tfidf is not None:
            parts.append(("tfidf", tfidf.transform(list(texts))))
        X, _ = combine(parts)
        return model_outputs(model, X)

    return score


def explanations(
    features: ProjectFeatures,
    folder: ProjectFolder,
    model: Any,
    rows: np.ndarray,
    rows_to_items: ItemSource,
    labeled_rows: np.ndarray,
) -> dict[int, dict[str, Any]]:
    """What drives the model's prediction for each queued row, as reason entries.

    - text, a linear model on TF-IDF alone: ``"drivers"``, the words with their exact
      contributions and their spans in the text
      (:func:`labelwise.models.explain.linear_contributions`);
    - text, any other model or representation: ``"drivers"`` from leaving each word out
      (:func:`labelwise.models.explain.word_influence`), ``method`` "leave-one-word-out";
    - tabular with a linear model: ``"drivers"``, the fields with their contributions; with a
      tree ensemble, the same from SHAP values (when the ``explain`` extra is installed);
    - images, any model: ``"occlusion"``, a coarse heat map of the drop in the predicted
      class's score when each patch is covered with the labeled items' mean image.

    Empty where none applies.
    """
    if not len(rows):
        return {}
    kind = features.spec.kind
    X = features.X
    if kind == "image":
        return _occlusions(features, folder, model, rows, rows_to_items, labeled_rows)
    if kind == "tabular":
        method = "linear"
        found = linear_contributions(model, X[rows], top=DRIVERS)
        if found is None:
            method = "shap"
            found = tree_contributions(model, X[rows], top=DRIVERS)  # SHAP, if installed
        if found is None:
            return {}
        names = list(rows_to_items.field_names())
        return {
            int(row): {
                "drivers": {
                    "toward": c.toward,
                    "against": c.against,
                    "terms": [[t, round(w, 4)] for t, w in term_weights(c, names)],
                    "spans": [],
                    "method": method,
                }
            }
            for row, c in zip(rows, found, strict=True)
        }
    if features.spec.name == "tfidf":
        exact = _tfidf_drivers(folder, model, X, rows, rows_to_items)
        if exact is not None:
            return exact
    return _left_out_words(features, folder, model, rows, rows_to_items)


def _tfidf_drivers(
    folder: ProjectFolder, model: Any, X: Any, rows: np.ndarray, rows_to_items: ItemSource
) -> dict[int, dict[str, Any]] | None:
    found = linear_contributions(model, X[rows], top=DRIVERS)
    featurizer = _featurizer(folder)
    vectorizer = getattr(featurizer, "vectorizer_", None)
    if found is None or featurizer is None or vectorizer is None:
        return None
    names = featurizer.get_feature_names_out()
    out: dict[int, dict[str, Any]] = {}
    for row, contributions in zip(rows, found, strict=True):
        terms = [(t, round(w, 4)) for t, w in term_weights(contributions, names)]
        text = rows_to_items[int(row)].content[:DRIVER_TEXT]
        spans = vectorizer_highlights(vectorizer, text, dict(terms))[:DRIVER_SPANS]
        out[int(row)] = {
            "drivers": {
                "toward": contributions.toward,
                "against": contributions.against,
                "terms": [[t, w] for t, w in terms],
                "spans": [[s, e, round(w, 4)] for s, e, w in spans],
                "method": "linear",
            }
        }
    return out


def _left_out_words(
    features: ProjectFeatures,
    folder: ProjectFolder,
    model: Any,
    rows: np.ndarray,
    rows_to_items: ItemSource,
) -> dict[int, dict[str, Any]]:
    score = text_scorer(features, folder, model)
    if score is None:
        return {}
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        text = rows_to_items[int(row)].content[:DRIVER_TEXT]
        found = word_influence(score, text, top=DRIVERS)
        if found is None:
            continue
        out[int(row)] = {
            "drivers": {
                "toward": found.toward,
                "against": found.against,
                "terms": [[t, round(w, 4)] for t, w in found.terms],
                "spans": [[s, e, round(w, 4)] for s, e, w in found.spans[:DRIVER_SPANS]],
                "method": "leave-one-word-out",
                "kind": found.kind,
            }
        }
    return out


def _occlusions(
    features: ProjectFeatures,
    folder: ProjectFolder,
    model: Any,
    rows: np.ndarray,
    rows_to_items: ItemSource,
    labeled_rows: np.ndarray,
) -> dict[int, dict[str, Any]]:
    """Occlusion maps: on pixels directly, or through the embedder for embedding features
    (each covered copy of the image is embedded again)."""
    spec = features.spec
    if spec.embedder is None:
        shape = getattr(_featurizer(folder), "image_shape_", None)
        if shape is None:
            return {}
        images = {int(r): np.asarray(features.X[int(r)]) for r in rows}
        baseline: Any = np.asarray(features.X[labeled_rows], dtype=np.float64).mean(axis=0)
        scored = model
    else:
        embedder = make_embedder(spec.embedder)
        loaded = {int(r): item_pixels(folder, rows_to_items, int(r)) for r in rows}
        sample = [item_pixels(folder, rows_to_items, int(r)) for r in labeled_rows[:200]]
        shapes = {img.shape for img in [*loaded.values(), *sample]}
        if len(shapes) != 1:
            return {}
        shape = next(iter(shapes))
        images = {r: img.reshape(-1) for r, img in loaded.items()}
        baseline = np.mean([img.reshape(-1) for img in sample], axis=0)
        scored = _EmbeddedImages(model, embedder, shape)
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        found = occlusion_map(scored, images[int(row)], tuple(shape), baseline=baseline)
        out[int(row)] = {
            "occlusion": {
                "target": found.target,
                "kind": found.kind,
                "patch": found.patch,
                "height": int(shape[0]),
                "width": int(shape[1]),
                "drop": np.round(found.drop, 4).tolist(),
            }
        }
    return out


def item_pixels(folder: ProjectFolder, rows_to_items: ItemSource, row: int) -> np.ndarray:
    """An item's image as floats in [0, 1]."""
    image = load_image(folder.inside(rows_to_items[row].content, folder.media_dir))
    return image.astype(np.float64) / 255.0


class _EmbeddedImages:
    """``model`` seen from flattened images: each batch is reshaped, embedded, then scored
    (what :func:`labelwise.models.explain.occlusion_map` needs of a model)."""

    def __init__(self, model: Any, embedder: Any, shape: tuple[int, ...]) -> None:
        self.model = model
        self.embedder = embedder
        self.shape = shape
        self.classes_ = model.classes_

    def _embed(self, flat: Any) -> Any:
        images = np.asarray(flat, dtype=np.float64).reshape(-1, *self.shape)
        return self.embedder.embed(np.clip(images, 0.0, 1.0))

    def __getattr__(self, name: str) -> Any:
        if name in ("predict_proba", "decision_function") and hasattr(self.model, name):
            method = getattr(self.model, name)
            return lambda flat: method(self._embed(flat))
        raise AttributeError(name)
