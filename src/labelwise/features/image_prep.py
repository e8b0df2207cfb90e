"""The torch embedders' image preprocessing: the images they accept, and each model's
evaluation transform (resize, crop or pad, normalise) run in torch on the embedding device.

Images: uint8, or floats in [0, 1], as one array of shape (n, h, w) or (n, h, w, c), or a
sequence of arrays of shape (h, w) or (h, w, c) that may differ in size (PIL images pass as
arrays). Grayscale becomes three channels, an alpha channel is dropped; each image is resized
and cropped as the model's own evaluation transform does (timm: the shorter side to
``size / crop_pct``, then the centre crop; OpenCLIP: its ``resize_mode``), with the model's
interpolation, then normalised with its mean and std (ImageNet's when it names none). This
runs in torch on the embedding device, without torchvision; results match the libraries' own
PIL-based transforms to within resampling differences.

:func:`as_images` checks a batch, :func:`prepare` turns a chunk of it into the model's input
by a :class:`Preprocess` (which :mod:`labelwise.features.image_models` reads from each
library's configuration).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from labelwise.exceptions import InvalidDataError
from labelwise.features.torch_runtime import Placement

if TYPE_CHECKING:
    import torch

__all__ = ["Preprocess", "as_images", "prepare"]

# PIL / torchvision interpolation names to torch.nn.functional.interpolate modes.
_INTERPOLATION = {
    "bicubic": "bicubic",
    "bilinear": "bilinear",
    "nearest": "nearest-exact",
    "lanczos": "bicubic",
    "hamming": "bilinear",
    "box": "area",
    "random": "bilinear",
}


@dataclass(frozen=True)
class Preprocess:
    """An evaluation transform: resize to ``scale`` by ``resize`` ("shortest": the image covers
    it, "longest": it fits inside, "squash": exactly), centre crop or pad to ``size`` with
    ``fill``, then normalise."""

    size: tuple[int, int]
    scale: tuple[int, int]
    resize: str
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fill: tuple[float, ...]
    channels: int = 3


def as_images(batch: Any) -> NDArray[Any] | list[NDArray[Any]]:
    """A stacked array (n, h, w) / (n, h, w, c) as it is, else a list of per-image arrays."""
    if isinstance(batch, np.ndarray) and batch.dtype != object:
        if batch.ndim not in (3, 4):
            raise InvalidDataError(
                f"images must be an array of shape (n, h, w) or (n, h, w, c), got shape "
                f"{batch.shape}"
            )
        return batch
    try:
        items = [np.asarray(item) for item in batch]
    except TypeError:
        raise InvalidDataError(
            f"images must be an array or a sequence of arrays, got {type(batch).__name__}"
        ) from None
    for i, item in enumerate(items):
        if item.ndim not in (2, 3):
            raise InvalidDataError(
                f"image {i} has shape {item.shape}; expected (h, w) or (h, w, c)"
            )
    return items


def prepare(
    chunk: NDArray[Any] | list[NDArray[Any]], prep: Preprocess, place: Placement
) -> torch.Tensor:
    """A chunk of images as the model's normalised input batch on the device."""
    torch = importlib.import_module("torch")
    if isinstance(chunk, np.ndarray):
        groups = [chunk if chunk.ndim == 4 else chunk[..., None]]
    else:  # consecutive images of one shape and dtype go through the transform together
        groups, run = [], [chunk[0]]
        for item in chunk[1:]:
            if item.shape == run[0].shape and item.dtype == run[0].dtype:
                run.append(item)
            else:
                groups.append(_stack(run))
                run = [item]
        groups.append(_stack(run))
    mean = torch.tensor(prep.mean, device=place.device).view(1, -1, 1, 1)
    std = torch.tensor(prep.std, device=place.device).view(1, -1, 1, 1)
    parts = [_transform(_pixels(group, place.device), prep) for group in groups]
    return (torch.cat(parts) - mean) / std


def _stack(images: list[NDArray[Any]]) -> NDArray[Any]:
    return np.stack([im if im.ndim == 3 else im[..., None] for im in images])


def _pixels(group: NDArray[Any], device: str) -> torch.Tensor:
    """(k, h, w, c) uint8 or [0, 1] floats to a float32 tensor (k, c', h, w) in [0, 1] on the
    device, with c' = 1 (grayscale) or 3 (alpha dropped)."""
    torch = importlib.import_module("torch")
    channels = group.shape[-1]
    if channels not in (1, 3, 4):
        raise InvalidDataError(
            f"images must have 1, 3 or 4 channels (the last axis), got {channels}"
        )
    if channels == 4:
        group = group[..., :3]
    if group.size == 0:
        raise InvalidDataError(f"images must not be empty, got shape {group.shape[1:]}")
    if group.dtype == np.uint8:
        scale = 255.0
    elif group.dtype.kind in "iu":
        lo, hi = int(group.min()), int(group.max())
        if lo < 0 or hi > 255:
            raise InvalidDataError(f"integer images must hold values in [0, 255], got [{lo}, {hi}]")
        group, scale = group.astype(np.uint8), 255.0
    elif group.dtype.kind == "f":
        group = group.astype(np.float32, copy=False)
        low, high = float(group.min()), float(group.max())
        if not (math.isfinite(low) and math.isfinite(high)) or low < -1e-3 or high > 1 + 1e-3:
            raise InvalidDataError(
                f"float images must hold values in [0, 1] (uint8 for 0-255), got [{low}, {high}]"
            )
        scale = 1.0
    else:
        raise InvalidDataError(f"images must be uint8 or floats in [0, 1], got {group.dtype}")
    tensor = torch.from_numpy(np.ascontiguousarray(group)).to(device, non_blocking=True)
    tensor = tensor.permute(0, 3, 1, 2).float()
    if scale != 1.0:
        tensor /= scale
    return tensor.clamp_(0.0, 1.0)


def _transform(x: torch.Tensor, prep: Preprocess) -> torch.Tensor:
    """Resize, fix the channels, centre crop or pad: (k, c, h, w) to (k, channels, *size)."""
    functional = importlib.import_module("torch.nn.functional")
    torch = importlib.import_module("torch")
    h, w = x.shape[-2:]
    if prep.resize == "squash":
        th, tw = prep.scale
    else:
        ratios = (prep.scale[0] / h, prep.scale[1] / w)
        ratio = max(ratios) if prep.resize == "shortest" else min(ratios)
        th, tw = max(1, round(h * ratio)), max(1, round(w * ratio))
    if (th, tw) != (h, w):
        mode = _INTERPOLATION.get(prep.interpolation, "bicubic")
        smooth = mode in ("bilinear", "bicubic")
        x = functional.interpolate(
            x,
            size=(th, tw),
            mode=mode,
            align_corners=False if smooth else None,
            antialias=smooth,
        ).clamp_(0.0, 1.0)
    if x.shape[1] != prep.channels:
        if prep.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        else:  # a one-channel model: ITU-R 601-2 luma, as PIL's "L"
            luma = torch.tensor((0.299, 0.587, 0.114), device=x.device).view(1, 3, 1, 1)
            x = (x * luma).sum(dim=1, keepdim=True)
    height, width = prep.size
    h, w = x.shape[-2:]
    top, left = round((h - height) / 2.0), round((w - width) / 2.0)
    x = x[:, :, max(top, 0) : max(top, 0) + height, max(left, 0) : max(left, 0) + width]
    h, w = x.shape[-2:]
    if (h, w) != (height, width):
        fill = torch.tensor(prep.fill[: prep.channels], device=x.device).view(1, -1, 1, 1)
        canvas = fill.expand(len(x), prep.channels, height, width).clone()
        top, left = (height - h) // 2, (width - w) // 2
        canvas[:, :, top : top + h, left : left + w] = x
        x = canvas
    return x.contiguous()
