"""A PyTorch multi-layer perceptron with Monte Carlo dropout, as a scikit-learn classifier.

:class:`MLPTorchClassifier` fits like any scikit-learn classifier (``fit`` / ``predict_proba`` /
``predict`` / ``classes_``, cloned through ``get_params``) and scores a pool on CUDA when
``torch.cuda.is_available()`` (``device="auto"``), else on the CPU. Beyond ``predict_proba`` it
draws Monte Carlo dropout samples (Gal & Ghahramani 2016): ``n_samples`` forward passes with
dropout left on, whose disagreement is what BALD measures (Houlsby et al. 2011; Gal et al.
2017)::

    predict_proba_samples(X, n_samples)  -> (n_samples, n_rows, n_classes) probabilities
    bald_scores(X, n_samples)            -> (n_rows,) mutual information, reduced on the device

The fitted weights are NumPy arrays (``coefs_``, ``intercepts_``), so a model pickles with
joblib and loads on a machine without a GPU; each scoring call moves them to its device.

How a pool is scored: in chunks of ``inference_batch_size`` rows (large on a GPU). A dense chunk
(array or memory map, any float dtype) is copied into a pinned float32 buffer and sent with a
non-blocking copy, while the GPU still works on the previous chunk (two buffers take turns); a
sparse chunk travels as its CSR arrays, which ``embedding_bag`` multiplies with the first layer.
The input scaling is folded into the first layer's weights, so a sparse pool stays sparse. The
first layer has no dropout in front of it, so the Monte Carlo passes share it and repeat only the
layers after it.

The training loop is :func:`labelwise.models.torch_training.train_network`; the network on the
device, :mod:`labelwise.models.torch_net`.

This module imports torch; :mod:`labelwise.models.registry` imports it only when the ``"mlp-torch"``
model is asked for (``pip install 'labelwise[torch]'``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MaxAbsScaler, StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_X_y

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.models.torch_net import (
    SMALL_SCORING_CELLS,
    TINY,
    DeviceNet,
    Dropout,
    Rows,
    cpu_threads,
    default_chunk,
    resolve_device,
    seeded_generator,
    stream,
)
from labelwise.models.torch_training import train_network
from labelwise.pool import Matrix

__all__ = ["MLPTorchClassifier", "resolve_device"]

_SCALINGS = ("auto", "standard", "maxabs", "none")


class MLPTorchClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron (ReLU, dropout after every hidden layer) trained with Adam.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (128, 128)
        Units per hidden layer; at least one layer.
    dropout : float in [0, 0.99], default 0.25
        Share of hidden units dropped in training and in Monte Carlo passes.
    scaling : {"auto", "standard", "maxabs", "none"}, default "auto"
        Input scaling fitted inside the model: ``"standard"`` (zero mean, unit variance; a
        sparse input is only divided by its standard deviation, so it stays sparse),
        ``"maxabs"`` (divide by each feature's largest magnitude). ``"auto"`` standardises a
        dense input and max-abs scales a sparse one: standardising TF-IDF blows rare words up to
        tens of standard deviations.
    class_weight : "balanced", dict or None, default "balanced"
        ``"balanced"`` weighs each class's loss by ``n / (n_classes * count)``: labels are
        scarce and often skewed early in active learning. A dict maps classes to weights
        (missing classes weigh 1).
    weight_decay : float, default 1e-4
        L2 penalty on the weights, added to the gradients; not on the biases, nor on the first
        layer of a sparse input (updated lazily, feature by feature, by ``SparseAdam``).
    learning_rate : float, default 3e-3
        Adam's step size.
    batch_size : int, default 128
        Training rows per step.
    max_epochs : int, default 200
    early_stopping : bool, default False
        True: hold out a stratified ``validation_fraction`` of the labeled rows, stop when their
        error (class-weighted like the loss) has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, and keep the weights of the best epoch (as scikit-learn's
        ``MLPClassifier`` does). False, or too few labels to hold any out (fewer than two per
        class, or a held-out share smaller than the number of classes): the same rule on the
        training loss, every row used for training. Off by default: with 60 to 1,000 labels
        (synthetic 3-class data, three draws), holding out 10 % cost 6 to 13 points of
        accuracy; a few dozen held-out rows pick their best epoch largely by chance.
    validation_fraction : float in (0, 1), default 0.1
    n_iter_no_change : int, default 10
    tol : float, default 1e-4
    device : str, default "auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        Resolved at every ``fit`` and scoring call, so a model fitted on a GPU scores on a
        machine without one.
    n_threads : int or None, default None
        CPU threads torch uses. None: one thread for ``fit`` (small steps gain nothing from
        more and several processes would oversubscribe the cores) and for scoring small inputs
        (rows x widest layer under two million), torch's own setting (``torch.set_num_threads``,
        ``OMP_NUM_THREADS``) for scoring larger ones.
    inference_batch_size : int or None, default None
        Rows scored per chunk. None: 4,096 on the CPU; on CUDA about 256 MiB of input per
        chunk (65,536 to 1,048,576 rows).
    random_state : int, numpy Generator or None, default None
        Fixes the weights' initialisation, the held-out split, the minibatch order and the
        dropout masks of training: the same seed gives the same weights on the same device and
        thread count.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    coefs_ : list of float32 ndarray, shape (n_in, n_out) per layer
        Weights on the scaled inputs (first layer) and on the hidden activations.
    intercepts_ : list of float32 ndarray, shape (n_out,) per layer
    scaler_ : fitted StandardScaler, MaxAbsScaler or None
    n_epochs_ : int
        Epochs run.
    best_epoch_ : int
        The epoch whose weights were kept.
    loss_curve_ : list of float
        Mean training loss per epoch.
    validation_error_curve_ : list of float or None
        Held-out error per epoch, class-weighted like the loss (with balanced weights, one
        minus the balanced accuracy); None when no share was held out.
    validation_loss_curve_ : list of float or None
        Held-out loss per epoch (None when no share was held out).
    device_ : str
        The device the model was fitted on.
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (128, 128),
        *,
        dropout: float = 0.25,
        scaling: str = "auto",
        class_weight: str | dict[Any, float] | None = "balanced",
        weight_decay: float = 1e-4,
        learning_rate: float = 3e-3,
        batch_size: int = 128,
        max_epochs: int = 200,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        device: str = "auto",
        n_threads: int | None = None,
        inference_batch_size: int | None = None,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.scaling = scaling
        self.class_weight = class_weight
        self.weight_decay = weight_decay
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.n_threads = n_threads
        self.inference_batch_size = inference_batch_size
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # --- validation ---------------------------------------------------------------------------

    def _check_params(self) -> None:
        sizes = self.hidden_layer_sizes
        if (
            not isinstance(sizes, (tuple, list))
            or not sizes
            or not all(_is_int(s) and s >= 1 for s in sizes)
        ):
            raise InvalidParameterError(
                f"hidden_layer_sizes must be a non-empty tuple of positive integers, got {sizes!r}"
            )
        _check_range("dropout", self.dropout, 0.0, 0.99)
        _check_range("validation_fraction", self.validation_fraction, 0.0, 1.0, open_=True)
        for name in ("weight_decay", "tol"):
            _check_range(name, getattr(self, name), 0.0, math.inf)
        _check_range("learning_rate", self.learning_rate, 0.0, math.inf, open_=True)
        for name in ("batch_size", "max_epochs", "n_iter_no_change"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
        for name in ("n_threads", "inference_batch_size"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise InvalidParameterError(
                    f"{name} must be a positive integer or None, got {value!r}"
                )
        if self.scaling not in _SCALINGS:
            raise InvalidParameterError(
                f"scaling must be one of {', '.join(_SCALINGS)}, got {self.scaling!r}"
            )
        if not (self.class_weight in ("balanced", None) or isinstance(self.class_weight, dict)):
            raise InvalidParameterError(
                f"class_weight must be 'balanced', a dict {{class: weight}} or None, got "
                f"{self.class_weight!r}"
            )

    def _check_input(self, X: Any) -> Matrix:
        """``X`` as a 2-D numeric matrix of the fitted width, without copying a pool.

        Finiteness is checked on the outputs (see :meth:`_score`), not by a pass over ``X``.
        """
        check_is_fitted(self, "coefs_")
        if sp.issparse(X):
            X = X if isinstance(X, (sp.csr_matrix, sp.csr_array)) else sp.csr_matrix(X)
        elif not isinstance(X, np.ndarray) or X.dtype == object:
            try:
                X = np.asarray(X, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InvalidDataError(f"X is not a numeric matrix: {exc}") from None
        if X.ndim != 2:
            raise InvalidDataError(
                f"X must be 2-D (n_samples, n_features), got shape {X.shape}. Reshape your data "
                "with array.reshape(-1, 1) for one feature or array.reshape(1, -1) for one sample"
            )
        if X.dtype.kind not in "fiub":
            raise InvalidDataError(f"X must be numeric, got dtype {X.dtype}")
        if X.shape[1] != self.n_features_in_:
            raise InvalidDataError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        return X

    # --- fitting ------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> MLPTorchClassifier:
        """Fit on ``X`` of shape (n_samples, n_features) (dense or sparse) and labels ``y``."""
        self._check_params()
        X, y = check_X_y(X, y, accept_sparse="csr", dtype=[np.float32, np.float64])
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise InvalidDataError(
                f"{type(self).__name__} needs labels of at least two classes, got one class: "
                f"{classes.tolist()!r}"
            )
        device = resolve_device(self.device)
        rng = np.random.default_rng(self.random_state)
        train, val = self._split(codes, len(classes), rng)
        scaler = self._make_scaler(sp.issparse(X))
        X_train = X[train] if scaler is None else scaler.fit_transform(X[train])
        X_val = None
        if val is not None:
            X_val = X[val] if scaler is None else scaler.transform(X[val])

        with cpu_threads(device, self.n_threads or 1):
            y_val = None if val is None else codes[val]
            weights, biases, history = train_network(
                self, X_train, codes[train], X_val, y_val, classes, device, rng
            )
        self.classes_ = classes
        self.n_features_in_ = int(X.shape[1])
        self.scaler_ = scaler
        self.coefs_ = weights
        self.intercepts_ = biases
        self.n_epochs_ = history["epochs"]
        self.best_epoch_ = history["best_epoch"]
        self.loss_curve_ = history["loss"]
        self.validation_error_curve_ = history["validation_error"]
        self.validation_loss_curve_ = history["validation_loss"]
        self.device_ = str(device)
        return self

    def _split(
        self, codes: NDArray[np.intp], n_classes: int, rng: np.random.Generator
    ) -> tuple[NDArray[np.intp], NDArray[np.intp] | None]:
        everything = np.arange(len(codes))
        n_val = math.ceil(self.validation_fraction * len(codes))
        counts = np.bincount(codes, minlength=n_classes)
        if (
            not self.early_stopping
            or counts.min() < 2
            or n_val < n_classes
            or len(codes) - n_val < n_classes
        ):
            return everything, None
        train, val = train_test_split(
            everything,
            test_size=n_val,
            stratify=codes,
            random_state=int(rng.integers(2**31)),
        )
        return np.sort(train), np.sort(val)

    def _make_scaler(self, sparse: bool) -> StandardScaler | MaxAbsScaler | None:
        kind = self.scaling
        if kind == "auto":
            kind = "maxabs" if sparse else "standard"
        if kind == "standard":
            return StandardScaler(with_mean=not sparse)
        if kind == "maxabs":
            return MaxAbsScaler()
        return None

    # --- scoring ------------------------------------------------------------------------------

    def predict_proba(self, X: Any) -> NDArray[np.float32]:
        """Class probabilities of shape (n_samples, n_classes), float32, dropout off."""
        X = self._check_input(X)

        def proba(x: Rows, net: DeviceNet) -> torch.Tensor:
            return torch.softmax(net.logits(net.first(x), None), dim=1)

        return self._score(X, proba, axis=0, empty=(0, len(self.classes_)))

    def predict(self, X: Any) -> NDArray[Any]:
        """The most probable class of each row."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_proba_samples(
        self,
        X: Any,
        n_samples: int,
        *,
        random_state: int | np.random.Generator | None = None,
    ) -> NDArray[np.float32]:
        """Monte Carlo dropout: ``n_samples`` stochastic forward passes with dropout on.

        Returns
        -------
        ndarray of shape (n_samples, n_rows, n_classes), float32
            One probability table per pass. The same ``random_state`` gives the same passes on
            the same device and chunking.
        """
        X = self._check_input(X)
        _check_n_samples(n_samples)
        dropout = self._mc_dropout(random_state)

        def samples(x: Rows, net: DeviceNet) -> torch.Tensor:
            h = net.first(x)
            return torch.stack(
                [torch.softmax(net.logits(h, dropout), dim=1) for _ in range(n_samples)]
            )

        return self._score(X, samples, axis=1, empty=(n_samples, 0, len(self.classes_)))

    def bald_scores(
        self,
        X: Any,
        n_samples: int,
        *,
        random_state: int | np.random.Generator | None = None,
    ) -> NDArray[np.float64]:
        """BALD (mutual information between the prediction and the weights) per row.

        The same quantity as :func:`labelwise.strategies.scorers.bald` of
        :meth:`predict_proba_samples` with the same ``random_state``, reduced on the device pass by
        pass (running sums of ``p`` and ``p log p`` in float64), so only one number per row comes
        back.

        Returns
        -------
        ndarray of shape (n_rows,), float64, in nats, at least zero
        """
        X = self._check_input(X)
        _check_n_samples(n_samples)
        dropout = self._mc_dropout(random_state)

        def bald(x: Rows, net: DeviceNet) -> torch.Tensor:
            h = net.first(x)
            mean = torch.zeros(
                (h.shape[0], len(self.classes_)), dtype=torch.float64, device=h.device
            )
            mean_entropy = torch.zeros(h.shape[0], dtype=torch.float64, device=h.device)
            for _ in range(n_samples):
                p = torch.softmax(net.logits(h, dropout), dim=1)
                mean += p
                mean_entropy -= (p * torch.log(p.clamp_min(TINY))).sum(dim=1, dtype=torch.float64)
            mean /= n_samples
            mean_entropy /= n_samples
            entropy_of_mean = -(mean * torch.log(mean.clamp_min(TINY))).sum(dim=1)
            return (entropy_of_mean - mean_entropy).clamp_min(0.0)

        return self._score(X, bald, axis=0, empty=(0,)).astype(np.float64, copy=False)

    def _mc_dropout(self, random_state: int | np.random.Generator | None) -> Dropout:
        """Dropout for Monte Carlo passes, its masks seeded from ``random_state``."""
        rng = np.random.default_rng(random_state)
        return Dropout(float(self.dropout), seeded_generator(resolve_device(self.device), rng))

    def _score(
        self,
        X: Matrix,
        fn: Callable[[Rows, DeviceNet], torch.Tensor],
        *,
        axis: int,
        empty: tuple[int, ...],
    ) -> NDArray[Any]:
        """``fn`` over ``X`` chunk by chunk on the device (see :func:`stream`)."""
        device = resolve_device(self.device)
        threads = self.n_threads
        width = max(self.n_features_in_, *(w.shape[1] for w in self.coefs_))
        if threads is None and X.shape[0] * width < SMALL_SCORING_CELLS:
            threads = 1
        scale, shift = _affine(self.scaler_, self.n_features_in_)
        net = DeviceNet(self.coefs_, self.intercepts_, scale, shift, device)
        return stream(
            X,
            lambda x: fn(x, net),
            device=device,
            rows=self.inference_batch_size or default_chunk(device, self.n_features_in_),
            threads=threads,
            axis=axis,
            empty=empty,
        )


def _affine(
    scaler: StandardScaler | MaxAbsScaler | None, n_features: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(scale, shift)`` with the scaler's transform equal to ``x * scale + shift``."""
    scale, shift = np.ones(n_features), np.zeros(n_features)
    if isinstance(scaler, MaxAbsScaler):
        scale = 1.0 / np.asarray(scaler.scale_, dtype=np.float64)
    elif isinstance(scaler, StandardScaler):
        if scaler.with_std:
            scale = 1.0 / np.asarray(scaler.scale_, dtype=np.float64)
        if scaler.with_mean:
            shift = -np.asarray(scaler.mean_, dtype=np.float64) * scale
    return scale, shift


def _check_n_samples(n_samples: Any) -> None:
    if not _is_int(n_samples) or n_samples < 1:
        raise InvalidParameterError(f"n_samples must be a positive integer, got {n_samples!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_range(name: str, value: Any, lo: float, hi: float, *, open_: bool = False) -> None:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if ok:
        ok = (lo < value < hi) if open_ else (lo <= value <= hi)
    if not ok:
        bounds = f"({lo}, {hi})" if open_ else f"[{lo}, {hi}]"
        raise InvalidParameterError(f"{name} must be a number in {bounds}, got {value!r}")
