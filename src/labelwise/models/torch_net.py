"""The network and the device plumbing behind
:class:`labelwise.models.torch_model.MLPTorchClassifier`.

Everything here works on tensors: the layers (a sparse input through ``embedding_bag``), seeded
dropout, the fitted weights on one device with the input scaling folded in, and :func:`stream`,
which runs a function over a pool chunk by chunk on the CPU or, overlapping the host's copies
with the GPU's work, on CUDA.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from numpy.typing import NDArray

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.pool import Matrix

__all__ = [
    "SMALL_SCORING_CELLS",
    "TINY",
    "DeviceNet",
    "Dropout",
    "Rows",
    "SparseRows",
    "TrainingRows",
    "cpu_threads",
    "default_chunk",
    "initial_weights",
    "input_layer",
    "later_layers",
    "resolve_device",
    "seeded_generator",
    "stream",
]

# Rows per scoring chunk on the CPU, where a chunk's activations should stay in cache (Monte
# Carlo passes took 10-30 % less CPU time with 4,096 rows than with 8,192, one thread); on CUDA
# about 256 MiB of float32 input per chunk.
_CPU_CHUNK = 4096
_GPU_CHUNK_BYTES = 2**28
_GPU_CHUNK_RANGE = (65_536, 1_048_576)
# Scoring fewer rows x widest layer than this runs on one CPU thread: on small inputs torch's
# threads cost more in synchronisation than they save (see DESIGN.md on oversubscription).
SMALL_SCORING_CELLS = 2_000_000
# Logarithms floor probabilities here (0 log 0 = 0), as labelwise.strategies.scorers.bald does.
TINY = float(np.finfo(np.float32).tiny)


def resolve_device(device: str) -> torch.device:
    """The torch device for ``device``: ``"auto"`` is CUDA when available, else the CPU.

    Raises :class:`InvalidParameterError` for an unknown name or a CUDA device on a machine
    without one.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidParameterError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidParameterError(
                f"device {device!r} asked for, but torch sees no CUDA GPU; use device='auto'"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InvalidParameterError(
                f"device {device!r} asked for, but torch sees {torch.cuda.device_count()} GPU(s)"
            )
    elif resolved.type != "cpu":
        raise InvalidParameterError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        )
    return resolved


@contextmanager
def cpu_threads(device: torch.device, n_threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(n_threads)`` for the block, on the CPU; restored after.

    Set even when ``torch.get_num_threads()`` already says ``n_threads``: threadpoolctl's
    ``threadpool_limits`` (the learner and the worker wrap fits in it) changes OpenMP's
    setting behind torch's back; torch then reports one thread, yet a small fit ran 20x
    slower (4 s against 0.2 s) until torch's own setter was called.
    """
    if device.type != "cpu" or n_threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Dropout:
    """Inverted dropout whose masks come from a seeded generator, one random byte per unit.

    A unit is kept when its byte is below ``keep`` (of 256), so the rate is applied with a
    resolution of 1/256 and the kept units are scaled by ``scale = 256 / keep`` (exact for the
    rate applied). Eight bytes come from each 64-bit draw: on the CPU this is 3-4x faster than
    ``torch.rand`` per unit, which would otherwise cost as much as the matrix products. Before
    a linear layer the scale is folded into its weights (``(h * m * s) @ W == (h * m) @ (s W)``),
    which saves a pass over the activations.
    """

    def __init__(self, rate: float, generator: torch.Generator):
        self.keep = round((1.0 - rate) * 256)
        self.scale = 256.0 / self.keep
        self.generator = generator

    def mask(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` with the dropped units zeroed (not rescaled)."""
        if self.keep >= 256:
            return h
        n = h.numel()
        words = torch.randint(
            -(2**63),
            2**63 - 1,
            ((n + 7) // 8,),
            generator=self.generator,
            device=h.device,
            dtype=torch.int64,
        )
        return h * (words.view(torch.uint8)[:n].view(h.shape) < self.keep)

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return self.mask(h) * self.scale


class SparseRows(NamedTuple):
    """CSR rows as ``embedding_bag`` takes them: ``rows @ W`` sums the weighted rows of ``W``.

    ``embedding_bag`` is stable on the CPU and on CUDA (torch's sparse CSR tensors are still
    beta) and returns a sparse gradient: a training step touches only the features present in
    its batch, not the whole vocabulary of a TF-IDF matrix.
    """

    indices: torch.Tensor  # int64, column of each stored value
    offsets: torch.Tensor  # int64, start of each row in ``indices``
    values: torch.Tensor  # float32

    @classmethod
    def from_scipy(cls, block: Any) -> SparseRows:
        block = sp.csr_matrix(block, dtype=np.float32)
        return cls(
            torch.from_numpy(block.indices.astype(np.int64)),
            torch.from_numpy(block.indptr[:-1].astype(np.int64)),
            torch.from_numpy(np.ascontiguousarray(block.data)),
        )

    def to(self, device: torch.device) -> SparseRows:
        return SparseRows(*(t.to(device) for t in self))


Rows = torch.Tensor | SparseRows


def input_layer(
    x: Rows, weight: torch.Tensor, bias: torch.Tensor, *, sparse_grad: bool = False
) -> torch.Tensor:
    if isinstance(x, SparseRows):
        summed = torch.nn.functional.embedding_bag(
            x.indices,
            weight,
            x.offsets,
            mode="sum",
            per_sample_weights=x.values,
            sparse=sparse_grad,
        )
        return torch.relu(summed + bias)
    return torch.relu(torch.addmm(bias, x, weight))


def later_layers(
    h: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    dropout: Dropout | None,
) -> torch.Tensor:
    """Logits from the first hidden layer's activations: dropout before every later layer."""
    last = len(weights) - 1
    for i in range(1, len(weights)):
        weight = weights[i]
        if dropout is not None and dropout.keep < 256:
            h = dropout.mask(h)
            weight = weight * dropout.scale
        h = torch.addmm(biases[i], h, weight)
        if i < last:
            h = torch.relu(h)
    return h


def _dense_float32(block: NDArray[Any]) -> NDArray[np.float32]:
    out = np.ascontiguousarray(block, dtype=np.float32)
    # torch.from_numpy refuses read-only memory (a memory-mapped pool) with a warning.
    return out if out.flags.writeable else out.copy()


def _host_blocks(X: Matrix, rows: int, device: torch.device) -> Iterator[Rows]:
    """``X`` in consecutive chunks of ``rows`` rows, as tensors on ``device``.

    On CUDA a dense chunk is copied into one of two pinned buffers and sent without blocking;
    before a buffer is filled again, the copy out of it must have finished (an event per
    buffer), so the host prepares chunk k+1 while the GPU still computes on chunk k.
    """
    n = X.shape[0]
    if sp.issparse(X):
        for start in range(0, n, rows):
            yield SparseRows.from_scipy(X[start : start + rows]).to(device)
        return
    if device.type != "cuda":
        for start in range(0, n, rows):
            yield torch.from_numpy(_dense_float32(X[start : start + rows]))
        return
    size = (min(rows, n), X.shape[1])
    buffers = [torch.empty(size, dtype=torch.float32, pin_memory=True) for _ in range(2)]
    sent: list[torch.cuda.Event | None] = [None, None]
    for k, start in enumerate(range(0, n, rows)):
        stop = min(start + rows, n)
        event = sent[k % 2]
        if event is not None:
            event.synchronize()
        staging = buffers[k % 2][: stop - start]
        staging.numpy()[...] = X[start:stop]  # casts to float32 on the way
        x = staging.to(device, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        sent[k % 2] = done
        yield x


class DeviceNet:
    """Fitted weights on one device, the input scaling ``x * scale + shift`` folded into the
    first layer.

    ``(x * scale + shift) @ W + b == x @ (scale[:, None] * W) + (shift @ W + b)``: the pool is
    fed as it is, dense or sparse, never transformed first.
    """

    def __init__(
        self,
        coefs: Sequence[NDArray[np.float32]],
        intercepts: Sequence[NDArray[np.float32]],
        scale: NDArray[np.float64],
        shift: NDArray[np.float64],
        device: torch.device,
    ):
        first = coefs[0].astype(np.float64)
        folded_w = (scale[:, None] * first).astype(np.float32)
        folded_b = (shift @ first + intercepts[0]).astype(np.float32)
        weights = [folded_w, *coefs[1:]]
        biases = [folded_b, *intercepts[1:]]
        self.weights = [torch.from_numpy(np.ascontiguousarray(w)).to(device) for w in weights]
        self.biases = [torch.from_numpy(np.ascontiguousarray(b)).to(device) for b in biases]

    def first(self, x: Rows) -> torch.Tensor:
        return input_layer(x, self.weights[0], self.biases[0])

    def logits(self, h: torch.Tensor, dropout: Dropout | None) -> torch.Tensor:
        return later_layers(h, self.weights, self.biases, dropout)


def initial_weights(
    sizes: list[int], seed: int, device: torch.device
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """He-uniform weights before each ReLU; the output layer a tenth of Glorot's, so the first
    predictions are near uniform (loss log K) rather than confidently wrong. Drawn on the CPU
    from ``seed``: the same start on every device."""
    init = torch.Generator().manual_seed(seed)
    weights, biases = [], []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        bound = 0.1 * math.sqrt(6.0 / (n_in + n_out)) if last else math.sqrt(6.0 / n_in)
        w = (torch.rand((n_in, n_out), generator=init) * 2 - 1) * bound
        weights.append(w.to(device).requires_grad_())
        biases.append(torch.zeros(n_out, device=device, requires_grad=True))
    return weights, biases


class TrainingRows:
    """The (scaled) training matrix on the device, or sparse rows sent batch by batch."""

    def __init__(self, X: Matrix, device: torch.device):
        self.device = device
        self.sparse = sp.csr_matrix(X, dtype=np.float32) if sp.issparse(X) else None
        self.dense = (
            None if self.sparse is not None else torch.from_numpy(_dense_float32(X)).to(device)
        )

    def take(self, rows: NDArray[np.intp]) -> Rows:
        if self.sparse is not None:
            return SparseRows.from_scipy(self.sparse[rows]).to(self.device)
        assert self.dense is not None
        return self.dense[torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)]


def seeded_generator(device: torch.device, rng: np.random.Generator) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(rng.integers(2**63)))


def default_chunk(device: torch.device, n_features: int) -> int:
    if device.type != "cuda":
        return _CPU_CHUNK
    lo, hi = _GPU_CHUNK_RANGE
    return int(min(hi, max(lo, _GPU_CHUNK_BYTES // (4 * max(n_features, 1)))))


def stream(
    X: Matrix,
    fn: Callable[[Rows], torch.Tensor],
    *,
    device: torch.device,
    rows: int,
    threads: int | None,
    axis: int,
    empty: tuple[int, ...],
) -> NDArray[Any]:
    """``fn`` over ``X`` in chunks of ``rows`` rows on ``device``, results concatenated on ``axis``.

    A non-finite input makes the network's outputs non-finite (in practice: an infinity meets
    weights of both signs); one flag, kept on the device and read once at the end, turns that
    into :class:`InvalidDataError` without a separate pass over the input.
    """
    parts: list[NDArray[Any]] = []
    with cpu_threads(device, threads), torch.inference_mode():
        finite = torch.ones((), dtype=torch.bool, device=device)
        pending: tuple[torch.Tensor, torch.cuda.Event] | None = None
        for x in _host_blocks(X, rows, device):
            out = fn(x)
            finite &= torch.isfinite(out).all()
            if device.type != "cuda":
                parts.append(out.numpy())
                continue
            # Results come back without blocking; the previous chunk's are collected once this
            # one's work is queued, so the GPU is never idle waiting for the host.
            host = out.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            if pending is not None:
                pending[1].synchronize()
                parts.append(pending[0].numpy())
            pending = (host, event)
        if pending is not None:
            pending[1].synchronize()
            parts.append(pending[0].numpy())
        if not bool(finite):
            raise InvalidDataError("X holds NaN or infinity: the model's outputs are not finite")
    if not parts:
        return np.empty(empty, dtype=np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)
