"""Training the network of :class:`labelwise.models.torch_model.MLPTorchClassifier`: Adam on
minibatches with dropout, class-weighted cross-entropy, and early stopping on a held-out share or
on the training loss, the best epoch's weights kept (:func:`train_network`).

A sparse input trains its first layer with sparse gradients and lazy Adam
(:func:`_optimizers`), so a step costs the batch's features, not the whole vocabulary.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from numpy.typing import NDArray

from labelwise.models.torch_net import (
    Dropout,
    Rows,
    TrainingRows,
    initial_weights,
    input_layer,
    later_layers,
    seeded_generator,
)
from labelwise.pool import Matrix

if TYPE_CHECKING:
    from labelwise.models.torch_model import MLPTorchClassifier

__all__ = ["train_network"]


def train_network(
    model: MLPTorchClassifier,
    X: Matrix,
    y: NDArray[np.intp],
    X_val: Matrix | None,
    y_val: NDArray[np.intp] | None,
    classes: NDArray[Any],
    device: torch.device,
    rng: np.random.Generator,
) -> tuple[list[NDArray[np.float32]], list[NDArray[np.float32]], dict[str, Any]]:
    """Train ``model``'s network (its parameters: layers, dropout, class weights, Adam's
    settings, epochs, stopping) on ``X`` (already scaled) and the class codes ``y``; stop on the
    held-out ``X_val``, ``y_val`` when given, else on the training loss.

    Returns the kept epoch's weights and biases as float32 arrays, and the history: ``"loss"``,
    ``"validation_error"`` and ``"validation_loss"`` (None without a held-out share),
    ``"epochs"`` and ``"best_epoch"``.
    """
    sizes = [X.shape[1], *map(int, model.hidden_layer_sizes), len(classes)]
    weights, biases = initial_weights(sizes, int(rng.integers(2**63)), device)
    sparse = sp.issparse(X)
    steps = _optimizers(model, weights, biases, sparse)
    class_weight = None
    weights_per_class = _class_weights(model.class_weight, classes, y)
    if weights_per_class is not None:
        class_weight = torch.tensor(weights_per_class, dtype=torch.float32, device=device)
    dropout = Dropout(float(model.dropout), seeded_generator(device, rng))
    data, labels = TrainingRows(X, device), torch.from_numpy(y.astype(np.int64)).to(device)
    val = None
    if X_val is not None and y_val is not None:
        val = (
            TrainingRows(X_val, device).take(np.arange(X_val.shape[0])),
            torch.from_numpy(y_val.astype(np.int64)).to(device),
        )

    def logits_of(x: Rows, drop: Dropout | None) -> torch.Tensor:
        h = input_layer(x, weights[0], biases[0], sparse_grad=sparse and drop is not None)
        return later_layers(h, weights, biases, drop)

    def validation(x: Rows, target: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            logits = logits_of(x, None)
            loss = torch.nn.functional.cross_entropy(logits, target, weight=class_weight)
            wrong = (logits.argmax(dim=1) != target).to(torch.float32)
            w = torch.ones_like(wrong) if class_weight is None else class_weight[target]
            return float((wrong * w).sum() / w.sum()), float(loss)

    history: dict[str, Any] = {
        "loss": [],
        "validation_error": [] if val else None,
        "validation_loss": [] if val else None,
    }
    best, best_epoch, stall = math.inf, 0, 0
    best_state = [t.detach().clone() for t in (*weights, *biases)]
    epoch = 0
    for epoch in range(1, model.max_epochs + 1):
        total = 0.0
        order = rng.permutation(len(y))
        for start in range(0, len(y), model.batch_size):
            batch = np.sort(order[start : start + model.batch_size])
            for optimizer in steps:
                optimizer.zero_grad(set_to_none=True)
            target = labels[torch.from_numpy(batch).to(device)]
            loss = torch.nn.functional.cross_entropy(
                logits_of(data.take(batch), dropout), target, weight=class_weight
            )
            loss.backward()
            for optimizer in steps:
                optimizer.step()
            total += float(loss.detach()) * len(batch)
        history["loss"].append(total / len(y))
        monitored = history["loss"][-1]
        if val is not None:
            monitored, validation_loss = validation(*val)
            history["validation_error"].append(monitored)
            history["validation_loss"].append(validation_loss)
        if monitored < best - model.tol:
            best, best_epoch, stall = monitored, epoch, 0
            best_state = [t.detach().clone() for t in (*weights, *biases)]
        else:
            stall += 1
            if stall >= model.n_iter_no_change:
                break
    history["epochs"], history["best_epoch"] = epoch, best_epoch
    arrays = [t.cpu().numpy().astype(np.float32) for t in best_state]
    return arrays[: len(weights)], arrays[len(weights) :], history


def _optimizers(
    model: MLPTorchClassifier, weights: list[torch.Tensor], biases: list[torch.Tensor], sparse: bool
) -> list[torch.optim.Optimizer]:
    """Adam with weight decay on the weights; for a sparse input, the first layer's weights
    get sparse gradients and lazy Adam (only the features in a batch move, no decay):
    a step then costs the batch's features, not the whole vocabulary."""
    dense_weights = weights[1:] if sparse else weights
    steps: list[torch.optim.Optimizer] = [
        torch.optim.Adam(
            [
                {"params": dense_weights, "weight_decay": model.weight_decay},
                {"params": biases, "weight_decay": 0.0},
            ],
            lr=model.learning_rate,
        )
    ]
    if sparse:
        steps.append(torch.optim.SparseAdam([weights[0]], lr=model.learning_rate))
    return steps


def _class_weights(
    spec: str | dict[Any, float] | None, classes: NDArray[Any], y: NDArray[np.intp]
) -> NDArray[np.float64] | None:
    if spec is None:
        return None
    if isinstance(spec, dict):
        return np.asarray([float(spec.get(c, 1.0)) for c in classes.tolist()])
    counts = np.bincount(y, minlength=len(classes)).astype(np.float64)
    return len(y) / (len(classes) * np.maximum(counts, 1))
