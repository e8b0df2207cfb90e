"""The text kind of the torch embedders, ``sentence-transformers:NAME_OR_PATH``:
:class:`SentenceTransformerEmbedder`.

It loads a sentence-transformers model from a folder (``SentenceTransformer.save``'s, or a
plain Hugging Face transformers model, mean-pooled) or, by name, from the local Hugging Face
cache only (the rule: :mod:`labelwise.features.torch_embedders`), in float32, and encodes texts
as :mod:`labelwise.features.torch_runtime` places them: float16 autocast on a GPU, a text whose
row overflows float16 encoded again in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from labelwise.exceptions import InvalidParameterError
from labelwise.features.embedders import Modality, text_list
from labelwise.features.torch_runtime import (
    check_folder,
    finite_rows,
    first_line,
    hub_cache,
    hub_offline,
    import_extra,
    inference,
    is_pathlike,
    placement,
)

__all__ = ["SentenceTransformerEmbedder"]


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder or the local Hugging Face cache.

    Parameters
    ----------
    argument : str
        A folder (``modules.json`` as ``SentenceTransformer.save`` writes it, or a plain
        transformers model with ``config.json``, mean-pooled), or a Hub name already cached.
    """

    modality: Modality = "text"

    def __init__(self, argument: str) -> None:
        self.name = f"sentence-transformers:{argument}"
        self._place = placement()
        package = import_extra("sentence_transformers", f"embedder {self.name!r}")
        is_name = not is_pathlike(argument)
        source = argument
        if not is_name:
            folder = Path(argument).expanduser()
            check_folder(
                self.name,
                folder,
                ("modules.json", "config.json"),
                "modules.json (a folder saved by SentenceTransformer.save) or config.json with "
                "the weights and tokenizer of a Hugging Face transformers model",
            )
            source = str(folder)
        try:
            with hub_offline():
                model = package.SentenceTransformer(
                    source, device=self._place.device, local_files_only=True
                )
        except OSError as exc:
            if is_name:  # transformers' word for a file neither on disk nor in the cache
                raise InvalidParameterError(
                    f"embedder {self.name!r}: no folder {argument!r} here, and no model of that "
                    f"name in the local Hugging Face cache ({hub_cache()}); nothing is "
                    f"downloaded: give the path of a folder that holds the model, or fetch it "
                    f"once where a network is allowed"
                ) from None
            raise InvalidParameterError(
                f"embedder {self.name!r}: cannot load a sentence-transformers model from "
                f"{source} ({first_line(exc)})"
            ) from None
        except (ValueError, RuntimeError, KeyError, ImportError) as exc:
            raise InvalidParameterError(
                f"embedder {self.name!r}: cannot load a sentence-transformers model from "
                f"{source} ({first_line(exc)})"
            ) from None
        # float32 weights whatever the folder holds (transformers may keep a checkpoint's
        # float16): exact on the CPU, and the float32 fallback of autocast stays float32
        model.float().eval()
        self._model = model
        self.dim = self._dimension()

    def _dimension(self) -> int:
        for method in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
            if hasattr(self._model, method):
                dim = getattr(self._model, method)()
                if dim:
                    return int(dim)
                break
        return int(self._encode(["dimension"], half=False).shape[1])

    def embed(self, batch: Sequence[str]) -> NDArray[np.float32]:
        """Texts to unit-norm float32 rows of shape (len(batch), dim)."""
        texts = text_list(batch)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = self._encode(texts, half=self._place.half)
        bad = ~np.isfinite(rows).all(axis=1)
        if bad.any():  # float16 overflowed: those texts again in float32
            rows[bad] = self._encode([texts[i] for i in np.flatnonzero(bad)], half=False)
        return finite_rows(self.name, rows)

    def _encode(self, texts: list[str], *, half: bool) -> NDArray[np.float32]:
        with inference(self._place.device, half):
            rows = self._model.encode(
                texts,
                batch_size=self._place.text_batch,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.array(rows, dtype=np.float32).reshape(len(texts), -1)
