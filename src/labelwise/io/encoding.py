"""Bytes of a text file to its text, with the encoding guessed where it is not UTF-8.

:func:`_decode_unicode` reads UTF-16 or UTF-32 with a byte order mark (told apart from a binary
file before the NUL test; :func:`_looks_like_utf16` spots UTF-16 without one); :func:`_decode`
reads UTF-8, else each line as UTF-8, cp1252 or latin-1, and says what it guessed, which
:func:`_warn_encoding` reports as a :class:`~labelwise.exceptions.DataWarning`. C1 control
characters left by a latin-1 round trip become the cp1252 punctuation they were (:func:`_fix_c1`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from labelwise.exceptions import DataWarning, InvalidDataError

# Text once decoded as latin-1 and saved as UTF-8 holds cp1252 punctuation as C1 control
# characters (U+0092 for a right quote); real text never uses C1 controls, so map them back.
_C1_TO_CP1252 = {
    code: bytes([code]).decode("cp1252")
    for code in range(0x80, 0xA0)
    if code not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)  # undefined in cp1252
}
_C1 = re.compile("[\x80-\x9f]")


# Byte order marks of the encodings that hold NUL bytes in ordinary text (UTF-32 first: its
# little-endian mark begins with UTF-16's).
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def _decode_unicode(raw: bytes, path: Path) -> str | None:
    """Text saved as UTF-16 or UTF-32 with a byte order mark (what spreadsheet programs write as
    "Unicode text"), else None. Such a file holds NUL bytes, so it must be told apart from a
    binary file before the NUL test."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise InvalidDataError(
                    f"{path} starts with a {encoding.upper()} byte order mark but is not valid "
                    f"{encoding.upper()} (byte {exc.start}: {exc.reason})"
                ) from None
    return None


def _looks_like_utf16(sample: bytes) -> bool:
    """Text in UTF-16 without a byte order mark: one byte of each pair is mostly NUL."""
    pairs = len(sample) // 2
    if pairs < 4:
        return False
    even, odd = sample[0 : 2 * pairs : 2].count(0), sample[1 : 2 * pairs : 2].count(0)
    return max(even, odd) >= 0.9 * pairs and min(even, odd) <= 0.1 * pairs


@dataclass(frozen=True)
class _Guess:
    """How a text that is not all UTF-8 was decoded: how many lines each fallback encoding
    read (cp1252, latin-1), the first such line (1-based) and the number of lines."""

    lines: dict[str, int]
    first_line: int
    total_lines: int


def _decode(raw: bytes) -> tuple[str, _Guess | None]:
    """The text of ``raw`` (UTF-8, with or without a byte order mark), and None; or, where it is
    not UTF-8, the text decoded line by line and what was guessed."""
    try:
        return _fix_c1(raw.decode("utf-8-sig")), None
    except UnicodeDecodeError:
        pass
    # Collections assembled from several sources mix encodings line by line; decoding each line
    # on its own (UTF-8, else cp1252, else latin-1, which never fails) keeps every row.
    lines = []
    guessed = {"cp1252": 0, "latin-1": 0}
    first = 0
    for number, line in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        for encoding in ("utf-8", "cp1252", "latin-1"):
            try:
                lines.append(line.decode(encoding))
            except UnicodeDecodeError:
                continue
            if encoding != "utf-8":
                guessed[encoding] += 1
                first = first or number
            break
    total = len(lines) - (lines[-1] == "")  # no line after the last newline
    return _fix_c1("\n".join(lines)), _Guess(guessed, first, total)


def _warn_encoding(path: Path, guess: _Guess | None) -> None:
    """A :class:`DataWarning` saying which encoding was guessed for a file that is not UTF-8."""
    if guess is None:
        return
    parts = " and ".join(f"{n:,} as {enc}" for enc, n in guess.lines.items() if n)
    warnings.warn(
        f"{path.name} is not UTF-8: the encoding was guessed line by line, {parts} of its "
        f"{guess.total_lines:,} lines (first at line {guess.first_line}), the rest as UTF-8; "
        "if accented letters look wrong, save the file as UTF-8",
        DataWarning,
        stacklevel=3,
    )


def _fix_c1(text: str) -> str:
    return text.translate(_C1_TO_CP1252) if _C1.search(text) else text
