"""Embedders on PyTorch models a user already has: sentence-transformers, timm and OpenCLIP.

Three kinds, named ``KIND:ARGUMENT`` in :func:`labelwise.features.embedders.make_embedder`:

* ``sentence-transformers:NAME_OR_PATH`` (texts): a folder as ``SentenceTransformer.save``
  writes it (``modules.json``), or a plain Hugging Face transformers folder (``config.json``,
  mean pooling); or a Hub model name (``all-MiniLM-L6-v2``, ``BAAI/bge-small-en-v1.5``) that
  is already in the local Hugging Face cache (``HF_HUB_CACHE``, by default
  ``~/.cache/huggingface/hub``).
* ``timm:NAME_OR_PATH`` (images): a timm model's pooled features (``num_classes=0``, the
  classifier left out). The rule:

  - ``timm:FOLDER``: a folder as timm's ``save_for_hf`` / ``push_to_hf_hub`` writes it, or a
    Hugging Face cache snapshot of one: ``config.json`` (``architecture``, preprocessing) and
    ``model.safetensors`` or ``pytorch_model.bin``;
  - ``timm:NAME:WEIGHTS_FILE``: the architecture ``NAME`` (timm's registry, optionally with
    a pretrained tag such as ``resnet50.a1_in1k``, whose configuration gives the input size,
    mean and std) with the weights in a local file (``.safetensors``, ``.pth``, ``.bin``);
  - ``timm:NAME``: the architecture with the weights of its pretrained tag (the default tag
    without one), found in the local Hugging Face cache (``timm/NAME.TAG``) or torch hub's
    checkpoint folder (``$TORCH_HOME/hub/checkpoints``). Never random weights.
* ``open-clip:ARCH:WEIGHTS_FILE`` (images): OpenCLIP's architecture ``ARCH``
  (``open_clip.list_models()``) with a local weights file, or ``open-clip:FOLDER``, a folder
  with ``open_clip_config.json`` and its weights; embedded by the image tower
  (``encode_image``).

Nothing is downloaded: paths are read as they are, a name is looked up in the local caches
only, and the Hugging Face Hub is switched to offline mode (``HF_HUB_OFFLINE``) while a model
loads, so a library that would fetch a missing file fails instead; the error says what was
looked for.

This module holds the entry, :func:`make`, and the kinds, :data:`KINDS`; the rest is in four
modules, whose names in ``__all__`` are re-exported here:

* :mod:`labelwise.features.text_models`: :class:`SentenceTransformerEmbedder`;
* :mod:`labelwise.features.image_models`: :class:`TimmEmbedder`, :class:`OpenClipEmbedder`;
* :mod:`labelwise.features.image_prep`: the images accepted (uint8 or floats in [0, 1], of
  any sizes) and the models' evaluation transforms, run in torch on the embedding device;
* :mod:`labelwise.features.torch_runtime`: the device (a CUDA GPU under float16 autocast with
  large batches, else the CPU in float32: :func:`placement`), the offline Hub, the imports of
  the optional packages.

Needs the ``embed`` extra (``pip install 'labelwise[embed]'``): torch, torchvision (which timm
and OpenCLIP import), sentence-transformers, timm, open_clip_torch. These modules import them
only when a model is made.
"""

from __future__ import annotations

from collections.abc import Callable

from labelwise.exceptions import InvalidParameterError
from labelwise.features.embedders import Embedder
from labelwise.features.image_models import OpenClipEmbedder, TimmEmbedder
from labelwise.features.text_models import SentenceTransformerEmbedder
from labelwise.features.torch_runtime import (
    CPU_IMAGE_BATCH,
    CPU_TEXT_BATCH,
    GPU_IMAGE_BATCH,
    GPU_TEXT_BATCH,
    INSTALL,
    Placement,
    import_extra,
    placement,
)

__all__ = [
    "CPU_IMAGE_BATCH",
    "CPU_TEXT_BATCH",
    "GPU_IMAGE_BATCH",
    "GPU_TEXT_BATCH",
    "INSTALL",
    "KINDS",
    "OpenClipEmbedder",
    "Placement",
    "SentenceTransformerEmbedder",
    "TimmEmbedder",
    "make",
    "placement",
]

#: Each kind and the argument it takes.
KINDS: dict[str, str] = {
    "sentence-transformers": "sentence-transformers:NAME_OR_PATH",
    "timm": "timm:FOLDER, timm:NAME:WEIGHTS_FILE or timm:NAME",
    "open-clip": "open-clip:ARCH:WEIGHTS_FILE or open-clip:FOLDER",
}


def make(kind: str, argument: str) -> Embedder:
    """The embedder ``kind`` (``"sentence-transformers"``, ``"timm"``, ``"open-clip"``) made
    from ``argument``, the text after ``kind:`` (see the module's docstring).

    Raises
    ------
    InvalidParameterError
        An unknown kind, an empty or malformed argument, a missing package of the ``embed``
        extra (the message gives the install command), a path that holds no model, or a name
        whose weights are not on this machine.
    """
    makers: dict[str, Callable[[str], Embedder]] = {
        "sentence-transformers": SentenceTransformerEmbedder,
        "timm": TimmEmbedder,
        "open-clip": OpenClipEmbedder,
    }
    if kind not in makers:
        raise InvalidParameterError(
            f"unknown torch embedder kind {kind!r}; expected one of: {', '.join(sorted(makers))}"
        )
    if not isinstance(argument, str) or not argument.strip():
        raise InvalidParameterError(
            f"embedder {kind!r} needs an argument: {KINDS[kind]} (nothing is downloaded)"
        )
    argument = argument.strip()
    import_extra("torch", f"embedder '{kind}:{argument}'")
    return makers[kind](argument)
