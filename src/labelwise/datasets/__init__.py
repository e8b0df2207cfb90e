"""Datasets shipped with Labelwise, addressable by name (``labelwise simulate sms-spam``).

See ``README.txt`` beside this module for sources, licences and citations.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["BUNDLED", "bundled_path", "resolve_data_path"]

#: name -> (file in this package, description)
BUNDLED: dict[str, tuple[str, str]] = {
    "sms-spam": (
        "sms_spam.tsv",
        "SMS Spam Collection: 5,574 messages, ham/spam (Almeida et al. 2011, CC BY 4.0)",
    ),
    "goemotions": (
        "goemotions_ekman.csv",
        "GoEmotions, Ekman labels: 3,000 Reddit comments, each with a set of 7 emotions "
        "(multi-label; Demszky et al. 2020, Apache 2.0)",
    ),
}


def bundled_path(name: str) -> Path:
    """The file of a bundled dataset."""
    filename, _ = BUNDLED[name]
    return Path(str(resources.files("labelwise.datasets").joinpath(filename)))


def resolve_data_path(text: str | Path) -> Path:
    """A path as given, or the file of a bundled dataset when ``text`` names one and no such
    path exists."""
    path = Path(text)
    if not path.exists() and str(text) in BUNDLED:
        return bundled_path(str(text))
    return path
