"""The columns a reader is told to use, and the checks every reader makes of them.

The whole-file reader (:func:`labelwise.io.load.load_dataset`), the chunked reader
(:func:`labelwise.io.load.open_tabular_stream`) and the table underneath them
(:class:`labelwise.io.tables._Table`) take the same five keywords: ``text_column``,
``image_column``, ``label_column``, ``id_column`` and ``feature_columns``. :class:`Columns`
holds them once, so each check (not text and image together, no feature columns beside either,
no column names for a format without columns) is written in one place. The names that give a
column its part when no keyword names it (``label``, ``id``, ``text`` and their like) are here
too, for the header check and the inference alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labelwise.exceptions import InvalidParameterError

__all__ = ["Columns"]

# Column names that give a column its part when no keyword names one (any case).
_LABEL_NAMES = frozenset({"label", "labels", "class", "target", "y", "category", "annotation"})
_ID_NAMES = frozenset({"id", "item_id", "uid"})
_TEXT_NAMES = frozenset(
    {"text", "message", "sentence", "content", "body", "comment", "review", "document"}
)


@dataclass(frozen=True)
class Columns:
    """Which column plays which part, as the caller named them (None: infer it).

    A column is named, or given by 0-based position as a string of digits when no column has
    that name.

    Attributes
    ----------
    text, image, label, id : str or None
        The ``text_column``, ``image_column``, ``label_column`` and ``id_column`` keywords.
    features : tuple of str or None
        The ``feature_columns`` keyword: the tabular features, in order.
    """

    text: str | None = None
    image: str | None = None
    label: str | None = None
    id: str | None = None
    features: tuple[str, ...] | None = None

    @classmethod
    def of(
        cls,
        *,
        text_column: str | None = None,
        image_column: str | None = None,
        label_column: str | None = None,
        feature_columns: Sequence[str] | None = None,
        id_column: str | None = None,
    ) -> Columns:
        """The columns from the readers' keywords."""
        features = None if feature_columns is None else tuple(feature_columns)
        return cls(text_column, image_column, label_column, id_column, features)

    def check(self) -> None:
        """Refuse roles that cannot go together: text and image, or features beside either."""
        if self.text is not None and self.image is not None:
            raise InvalidParameterError("give text_column or image_column, not both")
        if self.features is not None and (self.text is not None or self.image is not None):
            raise InvalidParameterError(
                "feature_columns is for tabular data: drop text_column and image_column"
            )

    @property
    def named(self) -> set[str]:
        """Every column named, whatever its role."""
        given = (self.text, self.image, self.label, self.id, *(self.features or ()))
        return {name for name in given if name is not None}

    @property
    def header_names(self) -> set[str]:
        """The columns named by name, not position: a digit string names a column by
        position, so it says nothing about whether the file has a header."""
        return {name for name in self.named if not name.isdigit()}

    def refuse(self, path: Path, what: str) -> None:
        """Refuse any column named for ``path``, which is ``what`` (a format without named
        columns: an image folder, a LIBSVM, ``.npz`` or ``.npy`` file)."""
        if self.named:
            raise InvalidParameterError(
                f"{path} is {what}, which has no named columns; column options do not apply "
                f"(got {sorted(self.named)})"
            )
