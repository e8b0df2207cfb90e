"""What the torch embedders (:mod:`labelwise.features.torch_embedders`) share: where and how
the models run, the offline Hugging Face Hub, the imports of the optional packages, the checks
of a model folder, and the rows' last check.

Where torch sees a CUDA GPU, models run there under float16 autocast (half precision: matrix
products and convolutions in float16, normalisations and softmax in float32) with large
batches (:data:`GPU_TEXT_BATCH` texts, :data:`GPU_IMAGE_BATCH` images); a row that overflows
float16 is computed again in float32. Elsewhere on the CPU in float32 with modest batches
(:data:`CPU_TEXT_BATCH`, :data:`CPU_IMAGE_BATCH`). :func:`placement` makes that choice and
:func:`inference` runs a forward pass by it. The rows come back as float32 NumPy arrays of
unit L2 norm (:func:`finite_rows`).

While a model loads, :func:`hub_offline` switches the Hugging Face Hub to offline mode
(``HF_HUB_OFFLINE``), so a library that would fetch a missing file fails instead.

The packages of the ``embed`` extra are imported by :func:`import_extra`, only when a model
is made; a missing one is an error that gives the install command, :data:`INSTALL`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.features.embedders import normalize_rows

__all__ = [
    "CPU_IMAGE_BATCH",
    "CPU_TEXT_BATCH",
    "GPU_IMAGE_BATCH",
    "GPU_TEXT_BATCH",
    "INSTALL",
    "Placement",
    "check_folder",
    "check_weights",
    "finite_rows",
    "first_line",
    "hub_cache",
    "hub_offline",
    "import_extra",
    "inference",
    "is_pathlike",
    "placement",
]

#: The command that installs what the torch embedders need.
INSTALL = "pip install 'labelwise[embed]'"

#: Items per forward pass on a CUDA GPU (float16 autocast) and on the CPU (float32).
GPU_TEXT_BATCH = 512
GPU_IMAGE_BATCH = 256
CPU_TEXT_BATCH = 32
CPU_IMAGE_BATCH = 32

# What counts as a weights file in a model folder.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


@dataclass(frozen=True)
class Placement:
    """Where and how the models run: the torch device, float16 autocast or not, batch sizes."""

    device: str
    half: bool
    text_batch: int
    image_batch: int


def placement() -> Placement:
    """CUDA with float16 autocast and large batches when torch sees a GPU, else the CPU."""
    torch = importlib.import_module("torch")
    if torch.cuda.is_available():
        return Placement("cuda", True, GPU_TEXT_BATCH, GPU_IMAGE_BATCH)
    return Placement("cpu", False, CPU_TEXT_BATCH, CPU_IMAGE_BATCH)


def import_extra(module: str, who: str) -> Any:
    """``module`` imported, or InvalidParameterError naming the install command."""
    try:
        return importlib.import_module(module)
    except (ImportError, RuntimeError) as exc:  # RuntimeError: a torchvision for another torch
        raise InvalidParameterError(
            f"{who} needs the {module.split('.')[0]} package, which could not be imported "
            f"({first_line(exc)}); install the embed extra: {INSTALL}"
        ) from None


def first_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message, for an error message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """The Hugging Face Hub offline while a model loads: files come from the cache or not at
    all. ``HF_HUB_OFFLINE`` is read when ``huggingface_hub`` is imported, so its module
    constant is switched too; both are restored afterwards."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved_env = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ[name] = "1"
    constants: Any = None
    with contextlib.suppress(ImportError):
        constants = importlib.import_module("huggingface_hub.constants")
    saved_flag = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved_flag
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def hub_cache() -> str:
    """The Hugging Face cache folder that names are looked up in."""
    try:
        return str(importlib.import_module("huggingface_hub.constants").HF_HUB_CACHE)
    except (ImportError, AttributeError):
        return "~/.cache/huggingface/hub"


def is_pathlike(argument: str) -> bool:
    """Whether ``argument`` is meant as a filesystem path rather than a model name."""
    return (
        argument.startswith(("/", ".", "~"))
        or "\\" in argument
        or argument.count("/") > 1
        or Path(argument).expanduser().exists()
    )


def finite_rows(name: str, rows: NDArray[np.float32]) -> NDArray[np.float32]:
    """``rows`` scaled to unit norm, or InvalidDataError if the model gave NaN or infinity."""
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if len(bad):
        raise InvalidDataError(
            f"embedder {name!r} gave non-finite values for {len(bad)} item(s), the first at "
            f"position {int(bad[0])}"
        )
    return normalize_rows(rows)


def check_folder(name: str, folder: Path, markers: Sequence[str], expected: str) -> None:
    """InvalidParameterError unless ``folder`` is a folder holding one of ``markers``."""
    if not folder.exists():
        raise InvalidParameterError(f"embedder {name!r}: no such folder: {folder}")
    if not folder.is_dir():
        raise InvalidParameterError(
            f"embedder {name!r}: {folder} is a file; expected a folder holding {expected}"
        )
    if not any((folder / marker).is_file() for marker in markers):
        raise InvalidParameterError(
            f"embedder {name!r}: the folder {folder} holds no model; expected {expected}"
        )


def check_weights(name: str, folder: Path, expected: str) -> None:
    """InvalidParameterError unless ``folder`` holds a weights file."""
    if not any(f.is_file() and f.suffix in _WEIGHT_SUFFIXES for f in folder.iterdir()):
        raise InvalidParameterError(
            f"embedder {name!r}: the folder {folder} holds no weights file; expected {expected}"
        )


@contextlib.contextmanager
def inference(device: str, half: bool) -> Iterator[None]:
    """Inference without gradients, under float16 autocast when ``half``."""
    torch = importlib.import_module("torch")
    with torch.inference_mode():
        if half:
            with torch.autocast(device_type=device, dtype=torch.float16):
                yield
        else:
            yield
