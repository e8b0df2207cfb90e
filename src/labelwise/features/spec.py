"""The ``features`` word: how a project (or a simulation) represents its items.

The same word everywhere: ``labelwise init --features``, ``labelwise simulate --features``, the
project settings. By kind of item:

* text: ``tfidf`` (words and word pairs), ``embedding[:EMBEDDER]`` (a pretrained embedder,
  ``wordllama`` unless named), ``tfidf+embedding[:EMBEDDER]`` (both, side by side), and
  ``auto[:EMBEDDER]``: both are computed, and every fit chooses among TF-IDF alone, the
  embedding alone and both by cross-validation on the labels so far (see
  :class:`labelwise.models.auto.AutoRepresentation`);
* image: ``pixels`` (flattened, in [0, 1]) or ``embedding[:EMBEDDER]`` (an image embedder:
  ``randconv``, random convolutional features that need no download, unless named, such as
  ``embedding:timm:/models/resnet50``);
* tabular: ``columns``, the numeric fields as they are.

:func:`parse_features` checks a word against the kind and returns a :class:`FeatureSpec`;
its ``name`` is the canonical spelling (the embedder always named), which is what a project
stores.
"""

from __future__ import annotations

from dataclasses import dataclass

from labelwise.exceptions import InvalidParameterError
from labelwise.features.embedders import DEFAULT_TEXT_EMBEDDER, embedder_modality

__all__ = [
    "DEFAULT_EMBEDDERS",
    "DEFAULT_FEATURES",
    "KINDS",
    "FeatureSpec",
    "default_features",
    "parse_features",
]

KINDS = ("text", "image", "tabular")

#: What a project of each kind uses unless told otherwise (see the README for the evidence).
DEFAULT_FEATURES = {"text": "tfidf+embedding", "image": "embedding", "tabular": "columns"}
#: The embedder ``embedding`` means for each kind when it names none.
DEFAULT_EMBEDDERS = {"text": DEFAULT_TEXT_EMBEDDER, "image": "randconv"}

# The representation that needs nothing but the items, per kind.
_BASE = {"text": "tfidf", "image": "pixels", "tabular": "columns"}


@dataclass(frozen=True)
class FeatureSpec:
    """A parsed ``features`` word.

    Attributes
    ----------
    kind : {"text", "image", "tabular"}
    name : str
        The canonical word, e.g. ``"tfidf+embedding:wordllama"``.
    parts : tuple of str
        The blocks of the feature matrix in column order: ``"embedding"`` first (its width is
        known before any fit), then the base representation (``"tfidf"``, ``"pixels"``,
        ``"columns"``).
    embedder : str or None
        The embedder's registry name when ``"embedding"`` is a part.
    auto : bool
        Whether every fit chooses among the parts (and their union) by cross-validation.
    """

    kind: str
    name: str
    parts: tuple[str, ...]
    embedder: str | None = None
    auto: bool = False

    @property
    def base(self) -> str | None:
        """The base representation among the parts (``"tfidf"``, ``"pixels"``, ``"columns"``)."""
        return _BASE[self.kind] if _BASE[self.kind] in self.parts else None

    @property
    def uses_embedding(self) -> bool:
        return self.embedder is not None


def default_features(kind: str) -> str:
    """The ``features`` word a project of ``kind`` gets by default."""
    _check_kind(kind)
    return DEFAULT_FEATURES[kind]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidParameterError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def _choices(kind: str) -> str:
    if kind == "text":
        return "tfidf, embedding[:EMBEDDER], tfidf+embedding[:EMBEDDER], auto[:EMBEDDER]"
    if kind == "image":
        return "pixels, embedding[:EMBEDDER]"
    return "columns"


def parse_features(kind: str, word: str | None = None) -> FeatureSpec:
    """The :class:`FeatureSpec` of ``word`` for items of ``kind`` (the kind's default if None).

    Raises
    ------
    InvalidParameterError
        A word that does not apply to the kind, an unknown embedder, or an embedder of the
        other modality (an image model for texts, say).
    """
    _check_kind(kind)
    if word is None:
        word = DEFAULT_FEATURES[kind]
    if not isinstance(word, str) or not word.strip():
        raise InvalidParameterError(f"features must be one of {_choices(kind)}; got {word!r}")
    text = word.strip()
    head, _, embedder = text.partition(":")
    base = _BASE[kind]
    forms: dict[str, tuple[str, ...]] = {base: (base,), "embedding": ("embedding",)}
    if kind == "text":  # text blocks are each of unit norm, so they can stand side by side
        forms |= {f"{base}+embedding": ("embedding", base), "auto": ("embedding", base)}
    if (kind == "tabular" and text != base) or head not in forms or (head == base and embedder):
        raise InvalidParameterError(
            f"features {word!r} do not apply to {kind} items; expected one of {_choices(kind)}"
        )
    parts = forms[head]
    if "embedding" not in parts:
        return FeatureSpec(kind, base, parts)
    if not embedder:
        embedder = DEFAULT_EMBEDDERS[kind]
    modality = embedder_modality(embedder)
    if modality != kind:
        raise InvalidParameterError(
            f"features {word!r}: embedder {embedder!r} embeds {modality}s, not {kind}s"
        )
    return FeatureSpec(kind, f"{head}:{embedder}", parts, embedder=embedder, auto=head == "auto")
