"""Random convolutional features: an image embedder with no weights to download and no fit.

``randconv`` (:class:`RandomConvEmbedder`) turns each image into 1,024 numbers:

1. the image is made grey (colour by its luminance, ITU-R BT.601 weights; an alpha channel is
   ignored), scaled to [0, 1] and resampled to 28 x 28 pixels (antialiased bilinear) when it
   has another size;
2. it is standardised on its own (its mean subtracted, divided by its standard deviation), so
   the features do not depend on brightness or contrast; a flat image embeds as a zero row;
3. 32 random 5 x 5 filters, drawn once from a normal distribution with a fixed seed
   (``numpy.random.RandomState(0)``, whose stream NumPy keeps stable) and made zero-mean and of
   unit norm, are correlated with it ("valid": 24 x 24 responses per filter);
4. each response map is split by sign into two rectified maps, ``max(r, 0)`` and
   ``max(-r, 0)`` (the "polarity split" of Coates & Ng, 2011);
5. every map is averaged over a 4 x 4 grid of cells (6 x 6 responses each), giving
   4 x 4 x 64 = 1,024 values, in the order (cell row, cell column, map) with the 32 positive
   maps before the 32 negative ones;
6. the row is returned as it is: these are raw features, not a similarity embedding, and the
   model standardises their columns with the pool's statistics
   (:func:`labelwise.features.scaling.fit_to_pool`), as it does pixels.

Why: a single layer of random filters, a rectifying non-linearity and local average pooling is
most of what makes a convolutional network's features work: Jarrett et al. (2009) found random
filters nearly as good as learned ones in such an architecture, and Saxe et al. (2011) showed
why (convolution with pooling is frequency-selective and translation-invariant whatever the
filters). The features tolerate small shifts and deformations that raw pixels do not, need
nothing but NumPy, are deterministic, and are fast: about 4,000 images of 28 x 28 a second on
two cores.

On PneumoniaMNIST, with their columns standardised by the pool's statistics as pixels are, they
raise logistic regression's area under the learning curve (macro-F1, 20 to 500 labels) above raw
pixels' for random, margin and default sampling alike, and its full-pool macro-F1 from about 0.94
to 0.96. Scaled to rows of unit norm instead (which the model would leave unscaled, as it leaves
a sentence embedding), they lose to pixels, as pixels made unit rows do too: a fixed penalty on
rows of norm 1 spread over a thousand dense columns is far too strong. See
``benchmarks/results/image_representation.md``.

References
----------
K. Jarrett, K. Kavukcuoglu, M. Ranzato and Y. LeCun. What is the best multi-stage architecture
for object recognition? ICCV 2009.
A. Saxe, P. W. Koh, Z. Chen, M. Bhand, B. Suresh and A. Y. Ng. On random weights and
unsupervised feature learning. ICML 2011.
A. Coates and A. Y. Ng. The importance of encoding versus training with sparse coding and
vector quantization. ICML 2011.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from labelwise.exceptions import InvalidDataError, InvalidParameterError

__all__ = ["RandomConvEmbedder", "random_conv_embedder", "to_grey"]

#: Luminance weights of R, G and B (ITU-R BT.601, as PIL's ``convert("L")``).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Images processed at once (bounds memory: about 6 MB of responses per 100 images).
_CHUNK = 512
#: A standardised image's denominator is its standard deviation plus this (pixels in [0, 1]).
_EPS = 1e-3
#: Images whose standard deviation is at most this are flat: they embed as a zero row.
_FLAT = 1e-6


class RandomConvEmbedder:
    """One layer of fixed random convolutional filters, rectified and average-pooled.

    Stateless: nothing is fitted, the filters follow from ``seed`` alone.

    Parameters
    ----------
    n_filters : int
        Random filters; the embedding has ``2 * n_filters * grid**2`` columns.
    kernel : int
        Filter side in pixels.
    side : int
        Images are resampled to ``side`` x ``side`` pixels first (when not of that size).
    grid : int
        Cells per side of the average-pooling grid.
    seed : int
        Seed of the filters (``numpy.random.RandomState``).

    Attributes
    ----------
    name : str
        ``"randconv"``.
    dim : int
        ``2 * n_filters * grid**2`` (1,024 by default).
    modality : {"image"}
    filters : float32 array of shape (kernel * kernel, n_filters)
        Zero-mean, unit-norm columns.
    """

    modality: Literal["text", "image"] = "image"

    def __init__(
        self, n_filters: int = 32, kernel: int = 5, side: int = 28, grid: int = 4, seed: int = 0
    ) -> None:
        if n_filters < 1 or kernel < 2 or grid < 1 or side - kernel + 1 < grid:
            raise InvalidParameterError(
                f"randconv needs n_filters >= 1, kernel >= 2 and side - kernel + 1 >= grid; got "
                f"n_filters={n_filters}, kernel={kernel}, side={side}, grid={grid}"
            )
        self.name = "randconv"
        self.n_filters = n_filters
        self.kernel = kernel
        self.side = side
        self.grid = grid
        self.seed = seed
        self.dim = 2 * n_filters * grid * grid
        weights = np.random.RandomState(seed).standard_normal((kernel * kernel, n_filters))
        weights -= weights.mean(axis=0)
        weights /= np.linalg.norm(weights, axis=0)
        self.filters: NDArray[np.float32] = weights.astype(np.float32)
        # Averaging weights of the pooling cells along a side of the (side - kernel + 1)-wide
        # responses: row i is 1 / width over cell i's span, 0 elsewhere.
        edges = np.linspace(0, side - kernel + 1, grid + 1).round().astype(np.intp)
        pool = np.zeros((grid, side - kernel + 1), dtype=np.float32)
        for i in range(grid):
            pool[i, edges[i] : edges[i + 1]] = 1.0 / (edges[i + 1] - edges[i])
        self._pool_weights = pool

    def __repr__(self) -> str:
        return (
            f"RandomConvEmbedder(n_filters={self.n_filters}, kernel={self.kernel}, "
            f"side={self.side}, grid={self.grid}, seed={self.seed})"
        )

    def embed(self, batch: Any) -> NDArray[np.float32]:
        """Images to feature rows (raw: not scaled to unit norm, see the module docstring).

        Parameters
        ----------
        batch : array of shape (n, h, w) or (n, h, w, c)
            uint8, or floats in [0, 1]; c is 1 (grey), 2 (grey and alpha), 3 (RGB) or 4 (RGBA).
            Any h and w: images are resampled to ``side`` x ``side``.

        Returns
        -------
        float32 array of shape (n, dim)
            Non-negative; all zero for a flat (constant) image.

        Raises
        ------
        InvalidDataError
            Not such an array: another shape or dtype, NaN or infinite values, floats outside
            [0, 1], an unknown number of channels, or an empty image.
        """
        grey = to_grey(batch)
        out = np.zeros((grey.shape[0], self.dim), dtype=np.float32)
        for start in range(0, grey.shape[0], _CHUNK):
            chunk = _resample(grey[start : start + _CHUNK], self.side)
            out[start : start + len(chunk)] = self._features(chunk)
        return out

    def _features(self, images: NDArray[np.float32]) -> NDArray[np.float32]:
        """(n, side, side) in [0, 1] to unnormalised features of shape (n, dim)."""
        n = images.shape[0]
        mean = images.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
        std = images.std(axis=(1, 2), keepdims=True, dtype=np.float64)
        flat = std[:, 0, 0] <= _FLAT
        x = ((images - mean) / (std + _EPS)).astype(np.float32)
        k = self.kernel
        m = self.side - k + 1
        patches = sliding_window_view(x, (k, k), axis=(1, 2)).reshape(n, m, m, k * k)
        responses = patches @ self.filters  # (n, m, m, n_filters)
        positive = self._pool(np.maximum(responses, 0.0))
        # max(-r, 0) = max(r, 0) - r, and pooling is linear: no second rectified map needed.
        negative = np.maximum(positive - self._pool(responses), 0.0)
        features = np.concatenate([positive, negative], axis=-1).reshape(n, self.dim)
        features[flat] = 0.0
        return features

    def _pool(self, maps: NDArray[np.float32]) -> NDArray[np.float32]:
        """(n, m, m, f) to cell means of shape (n, grid, grid, f)."""
        n, m, _, f = maps.shape
        weights = self._pool_weights
        rows = (weights @ maps.reshape(n, m, m * f)).reshape(n, self.grid, m, f)
        return weights @ rows  # (grid, m) @ (n, grid, m, f): the columns' cells


def random_conv_embedder(argument: str = "") -> RandomConvEmbedder:
    """The registry's ``randconv``: the default :class:`RandomConvEmbedder` (no argument)."""
    if argument:
        raise InvalidParameterError(f"embedder 'randconv' takes no argument, got {argument!r}")
    return RandomConvEmbedder()


def to_grey(batch: Any) -> NDArray[np.float32]:
    """A batch of images as grey float32 in [0, 1], shape (n, h, w).

    Parameters
    ----------
    batch : array of shape (n, h, w) or (n, h, w, c)
        uint8, or floats in [0, 1]; c is 1 (grey), 2 (grey and alpha), 3 (RGB) or 4 (RGBA).
        Colour becomes its luminance (BT.601); alpha is ignored.

    Raises
    ------
    InvalidDataError
        Naming what is wrong: the shape, the dtype, the channels or the values.
    """
    try:
        images = np.asarray(batch)
    except ValueError as exc:  # ragged nested lists: images of different sizes
        raise InvalidDataError(
            f"images must be one array of shape (n, h, w) or (n, h, w, c) ({exc})"
        ) from None
    if images.ndim not in (3, 4):
        raise InvalidDataError(
            f"images must be an array of shape (n, h, w) or (n, h, w, c), got shape {images.shape}"
        )
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise InvalidDataError(f"images must be at least 1 x 1 pixels, got shape {images.shape}")
    if images.dtype == np.uint8:
        values = images.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(images.dtype, np.floating):
        values = images.astype(np.float32)
        if values.size and not np.isfinite(values).all():
            raise InvalidDataError("images hold NaN or infinite values")
        if values.size and (values.min() < 0.0 or values.max() > 1.0):
            raise InvalidDataError(
                f"float images must hold values in [0, 1], got values from {values.min():g} "
                f"to {values.max():g} (pass uint8 for 0-255 pixels)"
            )
    else:
        raise InvalidDataError(
            f"images must be uint8 or floats in [0, 1], got dtype {images.dtype}"
        )
    if values.ndim == 3:
        return values
    channels = values.shape[3]
    if channels in (1, 2):  # grey, or grey and alpha
        return np.ascontiguousarray(values[..., 0])
    if channels in (3, 4):  # RGB, or RGBA
        return np.ascontiguousarray(values[..., :3] @ _LUMA)
    raise InvalidDataError(
        f"images have {channels} channels; expected 1 (grey), 2 (grey and alpha), 3 (RGB) or "
        "4 (RGBA)"
    )


def _resample(images: NDArray[np.float32], side: int) -> NDArray[np.float32]:
    """(n, h, w) to (n, side, side) by separable antialiased bilinear resampling."""
    h, w = images.shape[1:]
    if h == side and w == side:
        return images
    rows, cols = _resample_matrix(h, side), _resample_matrix(w, side)
    return (rows @ images @ cols.T).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _resample_matrix(source: int, target: int) -> NDArray[np.float32]:
    """Weights of shape (target, source): a triangle filter around each target pixel's centre,
    one source pixel wide when enlarging (bilinear) and one target pixel wide when shrinking
    (antialiased, as PIL resizes), each row summing to 1."""
    scale = source / target
    radius = max(scale, 1.0)
    centres = (np.arange(target) + 0.5) * scale
    positions = np.arange(source) + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(positions[None, :] - centres[:, None]) / radius)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights.astype(np.float32)
