"""The predictions file of a multi-label project: sets as bit masks over any number of labels
(one 64-bit word per 64 labels), read back and filtered on as the data browser does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labelwise.store.folder import ProjectFolder
from labelwise.store.prediction_cache import (
    cached_predictions,
    predicted_labels,
    predictions_path,
    rows_predicting,
    write_predictions,
)


class _Sets:
    """A fitted multi-label model in the shape the store reads: per-label probabilities are
    the rows of X, every threshold 0.5."""

    multi_label = True

    def __init__(self, labels: list[str]):
        self.classes_ = np.asarray(labels, dtype=object)
        self.thresholds_ = np.full(len(labels), 0.5)

    def predict_proba(self, X):
        return np.asarray(X, dtype=np.float64)


def _folder(tmp_path: Path) -> ProjectFolder:
    return ProjectFolder.create(tmp_path / "p", "p", f"sqlite:///{tmp_path / 'p.sqlite3'}")


def test_sets_of_more_than_64_labels_are_kept_and_read_back(tmp_path):
    labels = [f"tag{j:03d}" for j in range(130)]  # three words
    rng = np.random.default_rng(0)
    P = (rng.random((50, 130)) < 0.1).astype(np.float64) * 0.9  # 0.9 where on, else 0
    P[0] = 0.0  # an empty predicted set
    P[1, [0, 63, 64, 127, 128, 129]] = 0.9  # the words' edges
    folder = _folder(tmp_path)
    path = write_predictions(folder, 3, _Sets(labels), P, labels)
    assert path == predictions_path(folder, 3)
    found = cached_predictions(folder, 3, 50)
    assert found is not None and found["labels"].shape == (50, 3)
    for i in range(50):
        assert predicted_labels(found[i], labels) == [labels[j] for j in np.flatnonzero(P[i])]
    assert predicted_labels(found[0], labels) == []
    for j in (0, 63, 64, 127, 129):
        np.testing.assert_array_equal(rows_predicting(found, j), P[:, j] > 0)
    # The least sure label decision: 0.9 on, 0.0 off -> 0.9 everywhere (1.0 for the empty set).
    assert np.allclose(found["confidence"][1:], 0.9) and found["confidence"][0] == 1.0


def test_a_one_word_file_of_an_earlier_release_still_reads(tmp_path):
    """Before sets of any size, a file kept the mask as one uint64 per row."""
    labels = ["insult", "threat", "spam"]
    folder = _folder(tmp_path)
    old = np.zeros(4, dtype=[("labels", "<u8"), ("confidence", "<f4")])
    old["labels"] = [0b000, 0b101, 0b010, 0b111]
    old["confidence"] = 0.8
    folder.models_dir.mkdir(parents=True, exist_ok=True)
    np.save(predictions_path(folder, 2), old)
    found = cached_predictions(folder, 2, 4)
    assert found is not None
    assert [predicted_labels(r, labels) for r in found] == [
        [],
        ["insult", "spam"],
        ["threat"],
        labels,
    ]
    np.testing.assert_array_equal(rows_predicting(found, 2), [False, True, False, True])
    assert cached_predictions(folder, 2, 5) is None  # a pool of another size
