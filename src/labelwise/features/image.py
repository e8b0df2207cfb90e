"""Pixels: images flattened to rows, uint8 scaled to [0, 1]."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from labelwise.exceptions import InvalidDataError

__all__ = ["PixelFeaturizer", "images"]


class PixelFeaturizer(TransformerMixin, BaseEstimator):
    """Images of shape (n, h, w) or (n, h, w, c) to float32 rows of shape (n, h * w * c).

    uint8 pixels are divided by 255; other dtypes are cast as they are. ``transform`` refuses
    images of another shape than those seen by ``fit``.
    """

    def fit(self, X: Any, y: Any = None) -> PixelFeaturizer:
        self.image_shape_ = images(X).shape[1:]
        self.n_features_in_ = int(np.prod(self.image_shape_))
        return self

    def transform(self, X: Any) -> np.ndarray:
        batch = images(X)
        if batch.shape[1:] != self.image_shape_:
            raise InvalidDataError(
                f"images have shape {batch.shape[1:]}, but the featurizer was fitted on "
                f"{self.image_shape_}"
            )
        flat = batch.reshape(len(batch), -1).astype(np.float32)
        if batch.dtype == np.uint8:
            flat /= np.float32(255.0)
        return flat


def images(X: Any) -> np.ndarray:
    """``X`` as a numeric array of shape (n, h, w) or (n, h, w, c), or InvalidDataError."""
    batch = np.asarray(X)
    if batch.ndim not in (3, 4) or not np.issubdtype(batch.dtype, np.number):
        raise InvalidDataError(
            f"images must be a numeric array of shape (n, h, w) or (n, h, w, c), "
            f"got {batch.dtype} of shape {batch.shape}"
        )
    return batch
