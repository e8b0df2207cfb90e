"""The image kinds of the torch embedders: ``timm`` (:class:`TimmEmbedder`, a model's pooled
features) and ``open-clip`` (:class:`OpenClipEmbedder`, the image tower).

Each loads its model from local files only (the arguments' rule:
:mod:`labelwise.features.torch_embedders`; timm's names are looked up in the Hugging Face cache
and torch hub's checkpoint folder), reads the library's evaluation transform into a
:class:`~labelwise.features.image_prep.Preprocess`, and embeds images in batches as
:mod:`labelwise.features.torch_runtime` places them: float16 autocast on a GPU, an image whose
row overflows float16 embedded again in float32.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from labelwise.exceptions import InvalidParameterError
from labelwise.features.embedders import Modality
from labelwise.features.image_prep import Preprocess, as_images, prepare
from labelwise.features.torch_runtime import (
    Placement,
    check_folder,
    check_weights,
    finite_rows,
    first_line,
    hub_cache,
    hub_offline,
    import_extra,
    inference,
    is_pathlike,
    placement,
)

if TYPE_CHECKING:
    import torch

__all__ = ["OpenClipEmbedder", "TimmEmbedder"]

# timm's defaults where a pretrained configuration names none.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_DEFAULT_CROP_PCT = 0.875

# The weight files of a timm model on the Hugging Face Hub, preferred first (timm's own order).
_TIMM_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


class _ImageEmbedder:
    """Images to rows by ``self._forward`` (a batch tensor of shape (n, c, h, w), normalised,
    on the device, to (n, dim)); subclasses load the model and set ``_forward``, ``_prep``."""

    modality: Modality = "image"
    name: str
    dim: int
    _place: Placement
    _prep: Preprocess
    _forward: Callable[[Any], Any]

    def _measure(self) -> int:
        """The embedding's width, from one blank image (which also checks the model runs)."""
        torch = importlib.import_module("torch")
        blank = torch.zeros((1, self._prep.channels, *self._prep.size), device=self._place.device)
        try:
            with inference(self._place.device, False):
                out = self._forward(blank)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise InvalidParameterError(
                f"embedder {self.name!r}: the model does not run on a {self._prep.size} image "
                f"({first_line(exc)})"
            ) from None
        return int(out.reshape(1, -1).shape[1])

    def embed(self, batch: Any) -> NDArray[np.float32]:
        """Images (see :mod:`labelwise.features.image_prep`) to unit-norm float32 rows, (n, dim)."""
        images = as_images(batch)
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        size = self._place.image_batch
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            out[start : start + len(chunk)] = self._rows(prepare(chunk, self._prep, self._place))
        return finite_rows(self.name, out)

    def _rows(self, x: torch.Tensor) -> NDArray[np.float32]:
        with inference(self._place.device, self._place.half):
            rows = self._forward(x).reshape(len(x), -1).float()
        if self._place.half:
            bad = ~rows.isfinite().all(dim=1)
            if bool(bad.any()):  # float16 overflowed: those images again in float32
                with inference(self._place.device, False):
                    rows[bad] = self._forward(x[bad]).reshape(int(bad.sum()), -1).float()
        return np.asarray(rows.cpu().numpy(), dtype=np.float32)


def _pair(size: Any) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    values = tuple(int(s) for s in size)
    return (values[0], values[0]) if len(values) == 1 else (values[-2], values[-1])


def _triple(values: Any, default: tuple[float, ...], channels: int) -> tuple[float, ...]:
    if values is None:
        return default
    if isinstance(values, (int, float)):
        return (float(values),) * channels
    out = tuple(float(v) for v in values)
    return out * channels if len(out) == 1 else out


# ---------------------------------------------------------------------------------------- timm


class TimmEmbedder(_ImageEmbedder):
    """A timm model's pooled features (the classifier left out).

    Parameters
    ----------
    argument : str
        ``FOLDER`` (``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``, as timm
        saves a model), ``NAME:WEIGHTS_FILE`` or ``NAME`` (weights from the local caches).
    """

    def __init__(self, argument: str) -> None:
        self.name = f"timm:{argument}"
        self._place = placement()
        timm = import_extra("timm", f"embedder {self.name!r}")
        import_extra("timm.data", f"embedder {self.name!r}")
        with hub_offline():
            model = self._load(timm, argument)
        model.eval().requires_grad_(False).to(self._place.device)
        self._model = model
        self._forward = model
        self._prep = _timm_preprocess(timm, model)
        self.dim = self._measure()

    def _load(self, timm: Any, argument: str) -> Any:
        path = Path(argument).expanduser()
        name, sep, weights = argument.partition(":")
        if path.exists() or (is_pathlike(argument) and not (sep and _is_timm_name(name))):
            return self._from_folder(timm, path)
        if sep:
            return self._from_file(timm, name, Path(weights).expanduser())
        return self._from_cache(timm, argument)

    def _from_folder(self, timm: Any, folder: Path) -> Any:
        expected = (
            "config.json and model.safetensors or pytorch_model.bin, as timm's save_for_hf "
            "or push_to_hf_hub writes them"
        )
        check_folder(self.name, folder, ("config.json",), expected)
        check_weights(self.name, folder, expected)
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidParameterError(
                f"embedder {self.name!r}: cannot read {folder / 'config.json'} ({exc})"
            ) from None
        architecture = config.get("architecture") if isinstance(config, dict) else None
        if not isinstance(architecture, str):
            raise InvalidParameterError(
                f"embedder {self.name!r}: {folder / 'config.json'} names no 'architecture': "
                f"not a timm model folder (expected {expected})"
            )
        self._check_architecture(timm, architecture)
        return self._create(timm, f"local-dir:{folder.resolve()}")

    def _from_file(self, timm: Any, name: str, weights: Path) -> Any:
        self._check_architecture(timm, name)
        if not weights.is_file():
            raise InvalidParameterError(
                f"embedder {self.name!r}: no such weights file: {weights} (timm:NAME:WEIGHTS_FILE "
                f"takes a local .safetensors, .pth or .bin file)"
            )
        return self._create(timm, name, pretrained_cfg_overlay=_overlay(timm, name, weights))

    def _from_cache(self, timm: Any, name: str) -> Any:
        self._check_architecture(timm, name)
        try:
            cfg = timm.models.get_pretrained_cfg(name)
        except RuntimeError as exc:  # a tag the architecture does not have
            raise InvalidParameterError(f"embedder {self.name!r}: {exc}") from None
        found, looked = _cached_timm_weights(cfg)
        if found is None:
            where = "; ".join(looked) if looked else "the architecture has no pretrained weights"
            raise InvalidParameterError(
                f"embedder {self.name!r}: no weights for {name!r} on this machine and nothing is "
                f"downloaded (looked for {where}); give timm:{name}:WEIGHTS_FILE or a folder "
                f"saved by timm"
            )
        return self._create(timm, name, pretrained_cfg_overlay=_overlay(timm, name, Path(found)))

    def _check_architecture(self, timm: Any, name: str) -> None:
        if not timm.is_model(name):
            raise InvalidParameterError(
                f"embedder {self.name!r}: unknown timm model {name!r} (see timm.list_models()); "
                f"a path must name an existing folder"
            )

    def _create(self, timm: Any, name: str, **kwargs: Any) -> Any:
        try:
            return timm.create_model(name, pretrained=True, num_classes=0, **kwargs)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise InvalidParameterError(
                f"embedder {self.name!r}: cannot load the timm model ({first_line(exc)})"
            ) from None


def _overlay(timm: Any, name: str, weights: Path) -> dict[str, Any]:
    """The pretrained configuration's changes that load ``weights``: the file, read as a state
    dict unless it is a ``.npz`` (a configuration of original JAX weights loads those by its
    own code, which a converted ``.safetensors`` or ``.bin`` file must bypass)."""
    overlay: dict[str, Any] = {"file": str(weights)}
    with contextlib.suppress(RuntimeError):
        cfg = timm.models.get_pretrained_cfg(name)
        if getattr(cfg, "custom_load", False) is True and weights.suffix != ".npz":
            overlay["custom_load"] = False
    return overlay


def _is_timm_name(name: str) -> bool:
    return bool(name) and not any(c in name for c in "/\\~") and not name.startswith(".")


def _cached_timm_weights(cfg: Any) -> tuple[str | None, list[str]]:
    """A local copy of a pretrained configuration's weights, and where it was looked for:
    the Hugging Face cache (``hf_hub_id``), then torch hub's checkpoints (``url``)."""
    if cfg is None:
        return None, []
    looked: list[str] = []
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        with contextlib.suppress(ImportError):
            hub = importlib.import_module("huggingface_hub")
            repo, _, revision = hub_id.partition("@")
            preferred = getattr(cfg, "hf_hub_filename", None)
            names = [preferred] if preferred else list(_TIMM_WEIGHTS)
            for filename in names:
                found = hub.try_to_load_from_cache(repo, filename, revision=revision or None)
                if isinstance(found, str) and os.path.isfile(found):
                    return found, looked
            looked.append(f"{repo} ({' or '.join(names)}) in the Hugging Face cache {hub_cache()}")
    url = getattr(cfg, "url", None)
    if url:
        torch = importlib.import_module("torch")
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if candidate.is_file():
            return str(candidate), looked
        looked.append(str(candidate))
    return None, looked


def _timm_preprocess(timm: Any, model: Any) -> Preprocess:
    """timm's evaluation transform of ``model`` (its pretrained configuration, test size)."""
    config = timm.data.resolve_model_data_config(model, use_test_size=True)
    channels, height, width = (int(v) for v in config["input_size"])
    crop_pct = float(config.get("crop_pct") or _DEFAULT_CROP_PCT)
    mode = config.get("crop_mode") or "center"
    mean = _triple(config.get("mean"), _IMAGENET_MEAN, channels)
    return Preprocess(
        size=(height, width),
        scale=(math.floor(height / crop_pct), math.floor(width / crop_pct)),
        resize={"squash": "squash", "border": "longest"}.get(mode, "shortest"),
        interpolation=str(config.get("interpolation") or "bicubic"),
        mean=mean,
        std=_triple(config.get("std"), _IMAGENET_STD, channels),
        fill=mean,  # timm's "border" mode pads with the mean colour
        channels=channels if channels in (1, 3) else 3,
    )


# ------------------------------------------------------------------------------------ open-clip


class OpenClipEmbedder(_ImageEmbedder):
    """An OpenCLIP model's image tower (``encode_image``).

    Parameters
    ----------
    argument : str
        ``ARCH:WEIGHTS_FILE`` (an architecture of ``open_clip.list_models()`` and a local
        weights file), or a folder with ``open_clip_config.json`` and its weights.
    """

    def __init__(self, argument: str) -> None:
        self.name = f"open-clip:{argument}"
        self._place = placement()
        open_clip = import_extra("open_clip", f"embedder {self.name!r}")
        with hub_offline():
            model = self._load(open_clip, argument)
        model.eval().requires_grad_(False)
        self._model = model
        self._forward = model.encode_image
        self._prep = _open_clip_preprocess(open_clip, model)
        self.dim = self._measure()

    def _load(self, open_clip: Any, argument: str) -> Any:
        path = Path(argument).expanduser()
        arch, sep, weights = argument.partition(":")
        if path.is_dir() or (not sep and is_pathlike(argument)):
            expected = (
                "open_clip_config.json and its weights (open_clip_model.safetensors or "
                "open_clip_pytorch_model.bin)"
            )
            check_folder(self.name, path, ("open_clip_config.json",), expected)
            check_weights(self.name, path, expected)
            return self._create(open_clip, f"local-dir:{path.resolve()}", None)
        if not sep or not weights:
            raise InvalidParameterError(
                f"embedder {self.name!r}: expected open-clip:ARCH:WEIGHTS_FILE (an architecture "
                f"and a local weights file) or open-clip:FOLDER; nothing is downloaded"
            )
        if arch not in open_clip.list_models():
            raise InvalidParameterError(
                f"embedder {self.name!r}: unknown OpenCLIP architecture {arch!r} (see "
                f"open_clip.list_models())"
            )
        file = Path(weights).expanduser()
        if not file.is_file():
            raise InvalidParameterError(
                f"embedder {self.name!r}: no such weights file: {file} (a pretrained tag is "
                f"not downloaded: give the path of its open_clip_pytorch_model.bin or "
                f".safetensors file)"
            )
        return self._create(open_clip, arch, str(file))

    def _create(self, open_clip: Any, name: str, weights: str | None) -> Any:
        try:
            return open_clip.create_model(
                name, pretrained=weights, precision="fp32", device=self._place.device
            )
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise InvalidParameterError(
                f"embedder {self.name!r}: cannot load the OpenCLIP model ({first_line(exc)})"
            ) from None


def _open_clip_preprocess(open_clip: Any, model: Any) -> Preprocess:
    """OpenCLIP's evaluation transform of ``model`` (its preprocess configuration)."""
    if hasattr(open_clip, "get_model_preprocess_cfg"):
        config = dict(open_clip.get_model_preprocess_cfg(model))
    else:
        config = dict(getattr(model.visual, "preprocess_cfg", {}))
    size = _pair(config.get("size") or getattr(model.visual, "image_size", 224))
    fill = float(config.get("fill_color") or 0) / 255.0
    return Preprocess(
        size=size,
        scale=size,
        resize=str(config.get("resize_mode") or "shortest"),
        interpolation=str(config.get("interpolation") or "bicubic"),
        mean=_triple(config.get("mean"), _IMAGENET_MEAN, 3),
        std=_triple(config.get("std"), _IMAGENET_STD, 3),
        fill=(fill, fill, fill),
    )
