"""Embedders: pretrained models that turn a batch of texts or images into float32 rows.

One small protocol, :class:`Embedder` (a name, a dimension, ``embed(batch)``), and a registry
of embedders by name (:func:`make_embedder`):

* ``wordllama``: static token embeddings (WordLlama ``l2_supercat``, 256 dimensions) mean-pooled
  over each text. The weights and the tokenizer ship inside the ``wordllama`` wheel and are
  loaded from the installed package with downloads disabled: nothing is fetched, ever. About
  10,000 short texts a second on two cores. The offline default for text.
* ``sentence-transformers:NAME_OR_PATH`` (text), ``open-clip:ARCH:WEIGHTS_FILE`` and
  ``timm:NAME_OR_PATH`` (images): models a user already has, loaded by the libraries of the
  ``embed`` extra (``pip install 'labelwise[embed]'``, see
  :mod:`labelwise.features.torch_embedders`). They run on a CUDA GPU in half precision when
  torch sees one, else on the CPU.

A similarity embedding (wordllama, a sentence or CLIP model) returns rows of unit L2 norm (an
all-zero row for an item with nothing to embed, such as a text without a known token): cosine
similarity is a dot product, and the model uses the rows as they are. A feature extractor
(``randconv``) returns its raw features, and the model standardises their columns with the
pool's statistics, as it does pixels (:mod:`labelwise.features.scaling` tells the two apart
by the rows' norms). Measured: unit rows suit wordllama better than standardised ones on every
text set tried; randconv's features lose to pixels as unit rows and beat them standardised.

Loaded models are kept per name in this process: embedding a second batch does not load the
model again.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from labelwise.exceptions import InvalidParameterError
from labelwise.features.image_embedders import random_conv_embedder

__all__ = [
    "DEFAULT_TEXT_EMBEDDER",
    "Embedder",
    "WordLlamaEmbedder",
    "available_embedders",
    "make_embedder",
    "normalize_rows",
    "text_list",
]

Modality = Literal["text", "image"]

#: The text embedder ``embedding`` means when it names none.
DEFAULT_TEXT_EMBEDDER = "wordllama"


@runtime_checkable
class Embedder(Protocol):
    """A pretrained model that embeds a batch of items.

    Attributes
    ----------
    name : str
        The registry name it was made from (``"wordllama"``, ``"timm:resnet18"``, ...).
    dim : int
        Columns of each embedding.
    modality : {"text", "image"}
        What ``embed`` takes: a sequence of ``str``, or images as an array of shape
        (n, h, w) or (n, h, w, c), uint8 or floats in [0, 1].
    """

    name: str
    dim: int
    modality: Modality

    def embed(self, batch: Any) -> NDArray[np.float32]:
        """Rows of shape (len(batch), dim), float32: of unit L2 norm (or all zero) for a
        similarity embedding, raw features for a feature extractor."""
        ...


def normalize_rows(rows: NDArray[np.floating]) -> NDArray[np.float32]:
    """``rows`` as float32 with every row scaled to unit L2 norm; all-zero rows stay zero."""
    out = np.array(rows, dtype=np.float32)  # a copy: the caller's rows stay as they are
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


# ------------------------------------------------------------------------------------ wordllama

#: Tokens of a text that are pooled; the rest of a very long text is left out (bounded memory).
MAX_TOKENS = 8192


def _quiet_import(module: str) -> Any:
    """Import ``module`` without letting it configure the root logger.

    ``wordllama`` calls ``logging.basicConfig(level=INFO)`` when imported, which would turn on
    every library's INFO messages in this process. ``basicConfig`` does nothing while the root
    logger has a handler, so one stands in for the import.
    """
    import importlib

    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None
    if guard is not None:
        root.addHandler(guard)
    try:
        return importlib.import_module(module)
    finally:
        if guard is not None:
            root.removeHandler(guard)


class WordLlamaEmbedder:
    """Mean-pooled WordLlama token embeddings, loaded from the installed wheel (no download).

    Parameters
    ----------
    config : str
        The WordLlama configuration whose weights the wheel carries (``l2_supercat``).
    dim : int
        Its dimension (256 in the wheel).
    """

    modality: Modality = "text"

    def __init__(self, config: str = "l2_supercat", dim: int = 256) -> None:
        try:
            package = _quiet_import("wordllama")
        except ImportError as exc:  # a core dependency: only a broken installation lacks it
            raise InvalidParameterError(
                f"embedder 'wordllama' needs the wordllama package ({exc}); install it with: "
                "pip install wordllama"
            ) from None
        folder = Path(package.__file__).parent
        try:
            # cache_dir: the package folder, whose tokenizers/ holds the tokenizer file that a
            # plain load() would try to download; disable_download: never reach the network.
            model = package.WordLlama.load(
                config=config, dim=dim, cache_dir=folder, disable_download=True
            )
        except (FileNotFoundError, ValueError) as exc:
            raise InvalidParameterError(
                f"the wordllama package has no {config} weights of dimension {dim}: {exc}"
            ) from None
        self.name = DEFAULT_TEXT_EMBEDDER
        self.dim = int(model.embedding.shape[1])
        self._table = np.ascontiguousarray(model.embedding, dtype=np.float32)
        self._tokenizer = model.tokenizer
        self._tokenizer.no_padding()  # pooled by offsets below: no padding to the longest text
        self._tokenizer.enable_truncation(MAX_TOKENS)

    def token_ids(self, texts: Sequence[str]) -> list[NDArray[np.int64]]:
        """Each text's token ids (at most :data:`MAX_TOKENS`)."""
        encoded = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        top = self._table.shape[0] - 1
        return [np.clip(np.asarray(e.ids, dtype=np.int64), 0, top) for e in encoded]

    def embed(self, batch: Sequence[str]) -> NDArray[np.float32]:
        """Texts to unit-norm rows of shape (len(batch), dim): the mean of each text's token
        embeddings, normalised. A text without tokens gives a zero row."""
        texts = text_list(batch)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self.token_ids(texts)
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        # Token counts per text as a sparse matrix times the table: the sum of each text's token
        # vectors without gathering one vector per token (a chunk of tokens x 256 floats).
        counts = sp.csr_matrix(
            (
                np.ones(int(lengths.sum()), dtype=np.float32),
                np.concatenate(ids) if len(ids) else np.empty(0, np.int64),
                np.concatenate([[0], np.cumsum(lengths)]),
            ),
            shape=(len(texts), self._table.shape[0]),
        )
        return normalize_rows(np.asarray(counts @ self._table, dtype=np.float32))


def text_list(batch: Any) -> list[str]:
    """``batch`` as a list of str; :class:`InvalidParameterError` naming the first item that
    is not one."""
    texts = list(batch)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidParameterError(f"text item {i} is {type(text).__name__}, not str")
    return texts


# ------------------------------------------------------------------------------------- registry

# name or prefix -> (factory taking the part after "prefix:", modality, description)
_Factory = Callable[[str], Embedder]


def _wordllama(argument: str) -> Embedder:
    if argument:
        raise InvalidParameterError(f"embedder 'wordllama' takes no argument, got {argument!r}")
    return WordLlamaEmbedder()


def _torch_factory(kind: str) -> _Factory:
    def make(argument: str) -> Embedder:
        from labelwise.features import torch_embedders

        return torch_embedders.make(kind, argument)

    return make


_EMBEDDERS: dict[str, tuple[_Factory, Modality, str]] = {
    "wordllama": (
        _wordllama,
        "text",
        "WordLlama static token embeddings, 256 dimensions, shipped in its wheel (offline)",
    ),
    "sentence-transformers": (
        _torch_factory("sentence-transformers"),
        "text",
        "sentence-transformers:NAME_OR_PATH, a sentence-transformers model you have (embed extra)",
    ),
    "open-clip": (
        _torch_factory("open-clip"),
        "image",
        "open-clip:ARCH:WEIGHTS_FILE or open-clip:FOLDER, an OpenCLIP image tower (embed extra)",
    ),
    "timm": (
        _torch_factory("timm"),
        "image",
        "timm:FOLDER, timm:NAME:WEIGHTS_FILE or timm:NAME (weights in a local cache), a timm "
        "model's pooled features (embed extra)",
    ),
    "randconv": (
        random_conv_embedder,
        "image",
        "32 fixed random 5x5 filters, rectified and average-pooled, 1024 dimensions (no weights)",
    ),
}


def register_embedder(name: str, factory: _Factory, modality: Modality, description: str) -> None:
    """Add an embedder to the registry (``factory`` gets the text after ``name:``)."""
    _EMBEDDERS[name] = (factory, modality, description)


def available_embedders() -> dict[str, str]:
    """Registry names (or prefixes, before ``:``) with their modality and a description."""
    return {
        name: f"{modality}: {description}"
        for name, (_, modality, description) in sorted(_EMBEDDERS.items())
    }


def embedder_modality(name: str) -> Modality:
    """Whether the embedder ``name`` embeds texts or images (without loading it)."""
    prefix, _ = _split(name)
    return _EMBEDDERS[prefix][1]


def _split(name: str) -> tuple[str, str]:
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterError(f"an embedder name must be a non-empty string, got {name!r}")
    prefix, _, argument = name.strip().partition(":")
    if prefix not in _EMBEDDERS:
        known = ", ".join(sorted(_EMBEDDERS))
        raise InvalidParameterError(f"unknown embedder {name!r}; expected one of: {known}")
    return prefix, argument


def make_embedder(name: str) -> Embedder:
    """The embedder registered as ``name`` (``"wordllama"``, ``"timm:resnet18"``, ...), loaded
    once per process.

    Raises
    ------
    InvalidParameterError
        An unknown name, a missing optional package (the message gives the install command), or
        a path that holds no model.
    """
    prefix, argument = _split(name)
    return _load(prefix, argument)


@functools.lru_cache(maxsize=8)
def _load(prefix: str, argument: str) -> Embedder:
    factory, _, _ = _EMBEDDERS[prefix]
    return factory(argument)
