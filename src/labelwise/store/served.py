"""The served model's predictions for a project's items, a chunk of rows at a time.

:func:`served_model` loads the model the project serves (the artefact of
``projects.current_version_id``, written by :func:`labelwise.services.worker.train_once`, read with
:func:`~labelwise.store.versions.load_artefact`) together with the project's feature matrix
(:func:`~labelwise.store.features.project_features`, the matrix the worker fits on and ranks),
and :meth:`ServedModel.predict` gives its prediction and class probabilities for any rows of it,
through :func:`labelwise.models.registry.model_outputs` as the queue's predictions are made. Nothing
is fitted or written to the database; only the rows asked for are predicted, so a pool of millions
is predicted chunk by chunk (:mod:`labelwise.services.export`).

The prediction is the served model's, on the features it was fitted on, or none at all: it is
refused (:class:`~labelwise.exceptions.ConflictError`, naming why) when

- the project has no model yet (before the first fit, or while a cold-start queue is served);
- the project's ``features`` setting changed since the fit (it takes effect at the next one);
- the representation is TF-IDF and items were added since the fit: TF-IDF weights depend on
  every item, so the features are made anew for the next fit and the served model's columns
  mean something else. Embeddings, pixels and tabular columns are made item by item, so items
  added since are predicted like the others.

Every fit records what it was fitted on (its :func:`~labelwise.store.features.feature_source`)
in its artefact. For a model fitted by an earlier release, which did not, a TF-IDF cache newer
than the model is taken as rebuilt since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from labelwise.exceptions import ConflictError
from labelwise.models.registry import model_outputs
from labelwise.store.features import ProjectFeatures, project_features
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import count_items
from labelwise.store.models import ModelVersion, Project
from labelwise.store.projects import feature_spec
from labelwise.store.versions import COLD_START, load_artefact, served_version

__all__ = ["Predictions", "ServedModel", "served_model"]

#: The representation whose features depend on every item of the pool.
_POOL_DEPENDENT = "tfidf"


@dataclass(frozen=True)
class Predictions:
    """The served model's outputs on some rows.

    Attributes
    ----------
    labels : ndarray of str, shape (n,)
        The predicted label of each row (the class with the highest probability or score, as
        the queue's predictions are); in a multi-label project the predicted label set in its
        stored form (:mod:`labelwise.label_sets`).
    confidence : ndarray of float, shape (n,), or None
        The probability of the predicted label (multi-label: of the least sure label
        decision, :meth:`~labelwise.models.registry.ModelOutputs.confidence`); None for a model
        without probabilities (``svm``, ``linear-svm``: decision values only).
    probabilities : ndarray of float, shape (n, n_labels), or None
        One column per label of the project, in the label set's order; 0 for a label the model
        was not trained on (no labeled example yet). In a multi-label project each label's own
        probability (the rows do not sum to one). None without probabilities.
    """

    labels: NDArray[Any]
    confidence: NDArray[np.float64] | None
    probabilities: NDArray[np.float64] | None


@dataclass(frozen=True)
class ServedModel:
    """The model a project serves, ready to predict rows of its feature matrix.

    Attributes
    ----------
    version : int
        The model version's number (``v3`` is 3), as the dashboard and ``labelwise status``
        show it.
    version_id : int
        Its ``model_versions.id``.
    labels : tuple of str
        The project's label set: the columns of :attr:`Predictions.probabilities`.
    model : fitted classifier
    features : ProjectFeatures
    """

    version: int
    version_id: int
    labels: tuple[str, ...]
    model: Any
    features: ProjectFeatures

    def predict(self, rows: NDArray[np.intp] | list[int]) -> Predictions:
        """Predictions for ``rows`` (items' ``row`` numbers, ascending), in their order."""
        rows = np.asarray(rows, dtype=np.intp)
        out = model_outputs(self.model, self.features.X, rows)
        labels = np.asarray(out.predicted()).astype(str)
        if out.kind != "proba":
            return Predictions(labels, None, None)
        values = np.asarray(out.values, dtype=np.float64)
        column = {label: j for j, label in enumerate(self.labels)}
        probabilities = np.zeros((len(rows), len(self.labels)))
        for k, cls in enumerate(out.classes):
            j = column.get(str(cls))
            if j is not None:
                probabilities[:, j] = values[:, k]
        confidence = out.confidence()
        assert confidence is not None  # probabilities give a confidence
        return Predictions(labels, confidence, probabilities)


def served_model(session: Session, project: Project, folder: ProjectFolder) -> ServedModel:
    """The project's served model with its features (see the module docstring).

    Raises
    ------
    ConflictError
        No model yet, or the features it was fitted on are no longer the project's.
    NotFoundError, InvalidDataError
        Its file is gone, damaged, or leads outside ``models/``
        (:func:`~labelwise.store.versions.load_artefact`).
    """
    version = served_version(session, project)
    if version is None or version.status == COLD_START or not version.artefact:
        raise ConflictError(
            f"project {project.name!r} has no model to predict with yet: the worker fits the "
            "first once items of two classes are labeled (labelwise status shows how far); "
            "leave out predictions until then"
        )
    record = load_artefact(folder, version)
    fitted_on: dict[str, Any] | None = record.get("features")
    spec = feature_spec(project)
    was = (fitted_on or {}).get("features") or (version.metrics or {}).get(
        "representation", {}
    ).get("features")
    name = f"v{version.version}"
    if was is not None and was != spec.name:
        raise ConflictError(
            f"model {name} was fitted on {was} features, but the project's features are now "
            f"{spec.name} (the next fit uses them): {name} cannot predict on them; predictions "
            "come back with the next model version"
        )
    if spec.base == _POOL_DEPENDENT and fitted_on is not None:
        # Checked before the features are read: reading them would rebuild the TF-IDF.
        then, now = int(fitted_on["n_items"]), count_items(session, project)
        if now != then:
            raise _rebuilt(name, f"the {then:,} items there were then; {now - then:,} were added")
    features = project_features(session, project, folder)
    if spec.base == _POOL_DEPENDENT and fitted_on is None and _newer(features, version):
        raise _rebuilt(name, "the items there were then; items were added")
    width = int(features.X.shape[1])
    fitted_width = (fitted_on or {}).get(
        "n_features", getattr(record["model"], "n_features_in_", None)
    )
    if fitted_width is not None and int(fitted_width) != width:
        raise ConflictError(
            f"model {name} was fitted on {int(fitted_width):,} feature columns but the "
            f"project's features now have {width:,}: {name} cannot predict on them; "
            "predictions come back with the next model version"
        )
    return ServedModel(
        version=version.version,
        version_id=version.id,
        labels=tuple(str(label) for label in project.label_set),
        model=record["model"],
        features=features,
    )


def _rebuilt(name: str, what: str) -> ConflictError:
    return ConflictError(
        f"model {name} was fitted on the TF-IDF features of {what} since. TF-IDF depends on "
        f"every item, so the features are made anew for the next fit, and {name} cannot "
        "predict on them; predictions come back with the next model version (the worker fits "
        "one after retrain_every new labels)"
    )


def _newer(features: ProjectFeatures, version: ModelVersion) -> bool:
    """Whether the TF-IDF cache (the matrix's last file) was written after ``version`` was
    fitted: for models of earlier releases, which did not record their features."""
    written = datetime.fromtimestamp(features.files[-1].stat().st_mtime, UTC).replace(tzinfo=None)
    return written > version.created_at
