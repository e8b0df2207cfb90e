"""Explanations for annotators: what drives a prediction, and which labeled items look alike.

- :func:`nearest_labeled` finds, for each queried row, the most similar labeled rows by cosine
  similarity, so the annotator sees how comparable items were labeled (and a low similarity says
  "unlike anything labeled so far").
- :func:`linear_contributions` splits a linear model's decision value into one exact term per
  feature (weight × feature value, after the pipeline's feature-wise steps), the largest first.
- :func:`text_highlights` maps the contributions of a TF-IDF model's terms back to character
  spans of the text, so the page can mark the words that push toward each class.
- :func:`tree_contributions` does for tree ensembles what :func:`linear_contributions` does for
  linear models, with SHAP values (the optional ``shap`` package: the ``explain`` extra).
- :func:`word_influence` does it for any text model (embeddings, both representations, a
  model that chooses): each word is left out in turn and the text scored again; a word's
  weight is how much the probability of the predicted class drops without it.
- :func:`occlusion_map` covers an image patch by patch and records how much the model's score
  for its predicted class drops: a coarse heat map of where the model looks, for any model.

A multi-label model is explained, by each of these, for the label whose decision is least sure
(:meth:`~labelwise.models.registry.ModelOutputs.explained_column`): the one that made the item
worth asking about. The contributions and SHAP values are then those of that label's own
classifier.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import normalize

from labelwise.pool import Matrix, take_rows

__all__ = [
    "Contributions",
    "OcclusionMap",
    "linear_contributions",
    "near_duplicates",
    "nearest_labeled",
    "occlusion_map",
    "term_weights",
    "text_highlights",
    "tree_contributions",
    "vectorizer_highlights",
    "word_influence",
]

_BLOCK = 2048
#: Rows of ``among`` compared at once by :func:`near_duplicates`.
_SCAN_BLOCK = 32_768


def nearest_labeled(
    X: Matrix, rows: NDArray[np.intp], labeled: NDArray[np.intp], *, k: int = 3
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """The ``k`` labeled rows most similar to each of ``rows``.

    Parameters
    ----------
    X : matrix of shape (n_items, n_features)
    rows : int array of shape (n_rows,)
        Rows to explain.
    labeled : int array of shape (n_labeled,)
        Candidate neighbours.
    k : int

    Returns
    -------
    neighbours : int array of shape (n_rows, min(k, n_labeled))
        Pool indices (from ``labeled``), most similar first.
    similarity : float array of the same shape
        Cosine similarity in [-1, 1].
    """
    k = min(k, len(labeled))
    if k == 0 or len(rows) == 0:
        return np.empty((len(rows), 0), np.intp), np.empty((len(rows), 0))
    queried = normalize(take_rows(X, rows))
    out_idx = np.empty((len(rows), k), dtype=np.intp)
    out_sim = np.empty((len(rows), k))
    best_sim = np.full((len(rows), k), -np.inf)
    best_idx = np.zeros((len(rows), k), dtype=np.intp)
    for start in range(0, len(labeled), _BLOCK):
        block = labeled[start : start + _BLOCK]
        sims = queried @ normalize(take_rows(X, block)).T
        sims = np.asarray(sims.todense() if sp.issparse(sims) else sims, dtype=np.float64)
        cand_sim = np.concatenate([best_sim, sims], axis=1)
        cand_idx = np.concatenate([best_idx, np.broadcast_to(block, sims.shape)], axis=1)
        top = np.argsort(-cand_sim, axis=1, kind="stable")[:, :k]
        best_sim = np.take_along_axis(cand_sim, top, axis=1)
        best_idx = np.take_along_axis(cand_idx, top, axis=1)
    out_idx[:] = best_idx
    out_sim[:] = best_sim
    return out_idx, out_sim


def near_duplicates(
    X: Matrix,
    rows: NDArray[np.intp],
    among: NDArray[np.intp],
    *,
    threshold: float = 0.9,
    k: int = 20,
) -> list[list[tuple[int, float]]]:
    """For each of ``rows``, up to ``k`` rows of ``among`` (itself excluded) at cosine similarity
    ``threshold`` or more, most similar first (ties in ``among``'s order), as
    ``(row, similarity)``.

    ``among`` is scanned in blocks of :data:`_SCAN_BLOCK` rows, keeping per row only the hits
    at or above the threshold (at most ``k + 1`` of them): no sort over the candidates, so the
    open rows of a pool of ten million take seconds, not the minutes a running top-``k``
    (:func:`nearest_labeled`) would.
    """
    if k < 1 or not len(among) or not len(rows):
        return [[] for _ in rows]
    queried = normalize(take_rows(X, rows))
    keep = k + 1  # the row itself may be among the hits
    best_sim = [np.empty(0, dtype=np.float64) for _ in rows]
    best_pos = [np.empty(0, dtype=np.intp) for _ in rows]
    for start in range(0, len(among), _SCAN_BLOCK):
        block = among[start : start + _SCAN_BLOCK]
        sims = queried @ normalize(take_rows(X, block)).T
        sims = np.asarray(sims.todense() if sp.issparse(sims) else sims)  # X's precision
        hits = sims >= threshold - 1e-9
        for r in np.flatnonzero(hits.any(axis=1)).tolist():
            cols = np.flatnonzero(hits[r])
            sim = np.concatenate([best_sim[r], sims[r, cols]])
            pos = np.concatenate([best_pos[r], start + cols])
            order = np.lexsort((pos, -sim))[:keep]  # most similar first, then in order
            best_sim[r], best_pos[r] = sim[order], pos[order]
    out = []
    for i, row in enumerate(rows):
        found = [
            (int(among[p]), float(s))
            for p, s in zip(best_pos[i], best_sim[i], strict=True)
            if among[p] != row
        ]
        out.append(found[:k])
    return out


@dataclass(frozen=True)
class Contributions:
    """The largest per-feature terms of one row's decision value.

    Positive weights push toward ``toward``; negative ones toward ``against`` (the other class
    of a binary model) or, for a multi-class model, away from ``toward`` to the other classes.
    ``features`` and ``weights`` are sorted by decreasing ``abs(weight)``.
    """

    toward: str
    against: str | None
    features: NDArray[np.intp]
    weights: NDArray[np.float64]


def _linear_parts(model: Any, n_features: int) -> tuple[Any, Any] | None:
    """(feature-wise transform or None, final linear estimator), or None if not linear."""
    transform = None
    final = model
    if isinstance(model, Pipeline):
        transform, final = (model[:-1] if len(model) > 1 else None), model[-1]
    coef = getattr(final, "coef_", None)
    if coef is None or np.ndim(coef) != 2 or np.shape(coef)[1] != n_features:
        return None
    return transform, final


def _per_label(
    model: Any, X: Matrix, explain: Callable[..., list[Contributions] | None], top: int
) -> list[Contributions] | None:
    """A multi-label model's rows, each explained for the label it is least sure of (see
    :meth:`~labelwise.models.registry.ModelOutputs.explained_column`) by that label's own
    classifier: weights toward the label (positive) or away from it. None when the model keeps
    no per-label classifiers or ``explain`` cannot read one of them."""
    from labelwise.models.registry import model_outputs

    estimators = getattr(getattr(model, "model_", None), "estimators_", None)
    if estimators is None:
        return None
    out = model_outputs(model, X)
    labels = [str(c) for c in out.classes]
    columns = np.array([out.explained_column(i) for i in range(X.shape[0])], dtype=np.intp)
    empty = np.empty(0, dtype=np.intp), np.empty(0, dtype=np.float64)
    found: list[Contributions] = [Contributions("", None, *empty)] * X.shape[0]
    for j in np.unique(columns):
        rows = np.flatnonzero(columns == j)
        if estimators[j] is None:  # a label never (or always) seen: nothing drives it
            for i in rows:
                found[i] = Contributions(labels[j], None, *empty)
            continue
        explained = explain(estimators[j], take_rows(X, rows), top=top)
        if explained is None:
            return None
        for i, c in zip(rows, explained, strict=True):
            found[i] = replace(c, toward=labels[j], against=None)
    return found


def linear_contributions(model: Any, X: Matrix, *, top: int = 8) -> list[Contributions] | None:
    """Exact per-feature contributions of a fitted linear model's decision, row by row.

    For a model whose decision is ``w · z + b`` with ``z`` the features after the pipeline's
    earlier steps, the contribution of feature ``j`` is ``w[j] * z[j]``; they sum, with ``b``,
    to the decision value. A multi-class model's weights are taken for the predicted class,
    centred on the mean over classes (softmax and argmax do not change when every class gets
    the same term), so a weight says how much the feature favours that class over the others.

    A multi-label model (one classifier per label) is explained for the label it is least
    sure of, by that label's classifier.

    Returns None when the model is not linear in its input features: no ``coef_``, or a
    pipeline step that does not keep one column per input feature (PCA, say).
    """
    if getattr(model, "multi_label", False):
        return _per_label(model, X, linear_contributions, top)
    n_features = X.shape[1]
    parts = _linear_parts(model, n_features)
    if parts is None:
        return None
    transform, final = parts
    Z = transform.transform(X) if transform is not None else X
    if Z.shape[1] != n_features:
        return None
    Z = sp.csr_matrix(Z) if sp.issparse(Z) else np.asarray(Z, dtype=np.float64)
    coef = np.asarray(final.coef_, dtype=np.float64)
    classes = [str(c) for c in final.classes_]
    binary = coef.shape[0] == 1
    out: list[Contributions] = []
    for i in range(Z.shape[0]):
        if sp.issparse(Z):
            row = Z[i]
            cols, values = row.indices.astype(np.intp), row.data.astype(np.float64)
        else:
            cols = np.flatnonzero(Z[i]).astype(np.intp)
            values = Z[i, cols]
        if binary:
            w, toward, against = coef[0], classes[1], classes[0]
        else:
            scores = values @ coef[:, cols].T + np.asarray(final.intercept_)
            c = int(np.argmax(scores))
            w, toward, against = coef[c] - coef.mean(axis=0), classes[c], None
        terms = w[cols] * values
        order = np.argsort(-np.abs(terms), kind="stable")[:top]
        order = order[terms[order] != 0]
        out.append(Contributions(toward, against, cols[order], terms[order]))
    return out


def tree_contributions(model: Any, X: Matrix, *, top: int = 8) -> list[Contributions] | None:
    """SHAP values of a fitted tree ensemble (or a pipeline ending in one), row by row.

    TreeSHAP (Lundberg et al. 2020) is exact for trees: each row's values sum, with the
    expected value, to the model's output for the explained class (``classes_[1]`` of a binary
    model, the predicted class otherwise). Returns None when ``shap`` is not installed or the
    model is not one TreeSHAP reads (or a pipeline step changes the number of features). A
    multi-label model is explained as :func:`linear_contributions` explains it.
    """
    if getattr(model, "multi_label", False):
        return _per_label(model, X, tree_contributions, top)
    try:
        import shap
    except ImportError:
        return None
    transform, final = (model[:-1], model[-1]) if isinstance(model, Pipeline) else (None, model)
    if len(getattr(final, "estimators_", ())) == 0 and not hasattr(final, "tree_"):
        return None
    Z = transform.transform(X) if transform is not None and len(transform) else X
    if Z.shape[1] != X.shape[1]:
        return None
    Z = Z.toarray() if sp.issparse(Z) else np.asarray(Z, dtype=np.float64)  # type: ignore[union-attr]
    try:
        values = np.asarray(shap.TreeExplainer(final).shap_values(Z, check_additivity=False))
    except Exception:  # shap refuses models it does not know; no explanation then
        return None
    if values.ndim == 2:  # one output (a binary model's log-odds, some versions)
        values = np.stack([-values, values], axis=-1)
    if values.shape[0] != Z.shape[0]:  # older shap: a list per class, (classes, rows, features)
        values = np.moveaxis(values, 0, -1)
    classes = [str(c) for c in final.classes_]
    binary = len(classes) == 2
    predicted = np.argmax(final.predict_proba(Z), axis=1)
    out: list[Contributions] = []
    for i in range(Z.shape[0]):
        k = 1 if binary else int(predicted[i])
        terms = values[i, :, k]
        order = np.argsort(-np.abs(terms), kind="stable")[:top]
        order = order[terms[order] != 0]
        out.append(
            Contributions(
                classes[k],
                classes[0] if binary else None,
                order.astype(np.intp),
                terms[order].astype(np.float64),
            )
        )
    return out


_DEFAULT_TOKEN = r"(?u)\b\w\w+\b"


def text_highlights(
    text: str,
    term_weights: Mapping[str, float],
    *,
    token_pattern: str | None = _DEFAULT_TOKEN,
    preprocess: Any = None,
    ngram_range: tuple[int, int] = (1, 1),
) -> list[tuple[int, int, float]]:
    """Character spans of ``text`` for the terms in ``term_weights``, with their weights.

    Tokens are found as the vectorizer finds them (``token_pattern`` over the text, each token
    normalised by ``preprocess``, e.g. lower case and accents stripped). A term's weight goes to
    every occurrence; a word pair ("call now") marks both of its words. A token in several
    weighted terms gets their sum. Returns ``(start, end, weight)`` in text order.
    """
    pattern = re.compile(token_pattern or _DEFAULT_TOKEN)
    norm = preprocess or str.lower
    tokens = [(m.start(), m.end(), norm(m.group())) for m in pattern.finditer(text)]
    weight = [0.0] * len(tokens)
    hit = [False] * len(tokens)
    lo, hi = ngram_range
    for n in range(lo, hi + 1):
        for i in range(len(tokens) - n + 1):
            term = " ".join(t[2] for t in tokens[i : i + n])
            w = term_weights.get(term)
            if w is None:
                continue
            for j in range(i, i + n):
                weight[j] += w / n
                hit[j] = True
    return [(s, e, w) for (s, e, _), w, h in zip(tokens, weight, hit, strict=True) if h]


def vectorizer_highlights(
    vectorizer: Any, text: str, term_weights: Mapping[str, float]
) -> list[tuple[int, int, float]]:
    """:func:`text_highlights` with a fitted scikit-learn text vectorizer's own tokenisation."""
    return text_highlights(
        text,
        term_weights,
        token_pattern=getattr(vectorizer, "token_pattern", None),
        preprocess=vectorizer.build_preprocessor(),
        ngram_range=tuple(getattr(vectorizer, "ngram_range", (1, 1))),
    )


def term_weights(contributions: Contributions, names: Sequence[str]) -> list[tuple[str, float]]:
    """``(term, weight)`` pairs of one row's contributions, largest first."""
    return [
        (str(names[int(j)]), float(w))
        for j, w in zip(contributions.features, contributions.weights, strict=True)
    ]


@dataclass(frozen=True)
class WordInfluence:
    """What leaving each word out of a text does to the model's score for ``toward``.

    ``terms`` are ``(word, weight)``, largest ``abs(weight)`` first: a positive weight is how
    much the score of ``toward`` (the predicted class; for a multi-label model the label it is
    least sure of, ``against`` then None) drops when every occurrence of the word
    is left out, a negative one how much it rises. ``spans`` mark every occurrence,
    ``(start, end, weight)`` in text order. ``kind`` says what the score is: a probability
    ("proba") or a decision value ("decision").
    """

    toward: str
    against: str | None
    kind: str
    terms: list[tuple[str, float]]
    spans: list[tuple[int, int, float]]


def word_influence(
    score: Any,
    text: str,
    *,
    top: int = 8,
    max_words: int = 48,
    token_pattern: str = _DEFAULT_TOKEN,
) -> WordInfluence | None:
    """Leave-one-word-out influence of each word of ``text`` on a text model's prediction.

    Parameters
    ----------
    score : callable
        Texts (a list of str) to the model's :class:`~labelwise.models.registry.ModelOutputs` on
        them (featurize, then :func:`~labelwise.models.registry.model_outputs`): all variants are
        scored in one call.
    text : str
    top : int
        Words kept, by largest influence.
    max_words : int
        Distinct words tried (the first ones in the text): bounds the cost of a long text.
    token_pattern : str
        What a word is (scikit-learn's default token pattern).

    Returns None for a text without words.
    """
    pattern = re.compile(token_pattern)
    found = [(m.start(), m.end(), m.group().lower()) for m in pattern.finditer(text)]
    words = list(dict.fromkeys(w for _, _, w in found))[:max_words]
    if not words:
        return None
    variants = [text]
    for word in words:
        kept, at = [], 0
        for start, end, w in found:
            if w == word:
                kept.append(text[at:start])
                at = end
        kept.append(text[at:])
        variants.append(" ".join(part.strip() for part in kept if part.strip()))
    out = score(variants)
    values = np.asarray(out.values, dtype=np.float64)
    classes = [str(c) for c in out.classes]
    if values.ndim == 1:  # binary decision values: the score of classes[1]
        values = np.column_stack([-values, values])
    predicted = replace(out, values=values).explained_column(0)
    drop = values[0, predicted] - values[1:, predicted]
    order = np.argsort(-np.abs(drop), kind="stable")[:top]
    order = order[drop[order] != 0]
    terms = [(words[i], float(drop[i])) for i in order]
    weight = dict(terms)
    spans = [(s, e, weight[w]) for s, e, w in found if w in weight]
    # A multi-label model's words lean toward one label or away from it, never toward another.
    against = classes[1 - predicted] if len(classes) == 2 and not out.multi_label else None
    return WordInfluence(classes[predicted], against, out.kind, terms, spans)


@dataclass(frozen=True)
class OcclusionMap:
    """How much covering each patch of an image lowers the model's score for ``target``.

    ``drop`` has shape ``(rows, cols)`` of patches over the image (``patch`` pixels square,
    the last row and column may be smaller); positive where the patch supports ``target``.
    ``kind`` says what the score is: a probability ("proba") or a decision value ("decision").
    """

    target: str
    kind: str
    patch: int
    drop: NDArray[np.float64]


def occlusion_map(
    model: Any,
    x: NDArray[Any],
    image_shape: tuple[int, ...],
    *,
    patch: int | None = None,
    baseline: NDArray[Any] | float = 0.0,
) -> OcclusionMap:
    """Occlusion sensitivity (Zeiler & Fergus 2014) of one flattened image.

    Each ``patch`` × ``patch`` square (all channels) is set to ``baseline`` (a number, or a
    flattened image such as the pool's mean) and the image is scored again; the map is the
    score of the originally predicted class minus the occluded score. All occluded copies are
    scored in one call. ``patch`` defaults to about a seventh of the shorter side.
    """
    from labelwise.models.registry import model_outputs

    if len(image_shape) not in (2, 3):
        raise ValueError(f"image_shape must be (h, w) or (h, w, c), got {image_shape}")
    h, w = int(image_shape[0]), int(image_shape[1])
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    if flat.size != int(np.prod(image_shape)):
        raise ValueError(f"{flat.size} values do not make an image of shape {image_shape}")
    size = patch or max(1, round(min(h, w) / 7))
    base = np.broadcast_to(np.asarray(baseline, dtype=np.float64).reshape(-1), flat.shape)
    base_img = base.reshape(image_shape)
    ys, xs = range(0, h, size), range(0, w, size)
    copies = np.repeat(flat[None, :], len(ys) * len(xs) + 1, axis=0)
    views = copies.reshape(len(copies), *image_shape)
    for k, (i, j) in enumerate((i, j) for i in ys for j in xs):
        views[k + 1, i : i + size, j : j + size] = base_img[i : i + size, j : j + size]
    out = model_outputs(model, copies)
    values = out.values
    if values.ndim == 1:  # binary decision values: the score of classes[1]
        predicted = int(values[0] > 0)
        score = values if predicted == 1 else -values
    else:
        predicted = out.explained_column(0)
        score = values[:, predicted]
    drop = (score[0] - score[1:]).reshape(len(ys), len(xs))
    return OcclusionMap(str(out.classes[predicted]), out.kind, size, drop)
