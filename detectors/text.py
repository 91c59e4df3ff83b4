"""Text normalization and character n-gram fingerprints, for Chinese and English alike.

Near-duplicate detection must work without word segmentation (Chinese has no
spaces) and be cheap enough to run on every user turn of a live stream. So a
text is normalized (NFKC, which also folds full-width forms to half-width;
casefold; punctuation and symbols to spaces; no spaces between CJK characters),
cut into overlapping character n-grams, and each n-gram is hashed to a stable
32-bit integer (CRC-32: the same value in every process and after a restart,
unlike ``hash()``). Two texts are compared with the Dice coefficient of their
n-gram sets, computed with C-level frozenset intersection.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from typing import Final

CJK_RANGES: Final = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
"""Kana and CJK ideographs: scripts written without spaces between words."""

_NON_WORD: Final = re.compile(r"[\W_]+")
_SPACE_BETWEEN_CJK: Final = re.compile(rf"(?<=[{CJK_RANGES}])\s+(?=[{CJK_RANGES}])")
_CJK_CHAR: Final = re.compile(rf"[{CJK_RANGES}]")


def normalize(text: str) -> str:
    """Fold a text to the form used for matching and fingerprints.

    NFKC (full-width ``ＡＢＣ？`` becomes ``ABC?``), casefold, every run of
    punctuation, symbols, underscores and whitespace becomes one space, and
    spaces between two CJK characters are dropped (``我 要 退款`` is ``我要退款``).
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    spaced = _NON_WORD.sub(" ", folded).strip()
    return _SPACE_BETWEEN_CJK.sub("", spaced)


def is_cjk(normalized: str) -> bool:
    """True when at least half of the non-space characters are CJK."""
    letters = len(normalized) - normalized.count(" ")
    return letters > 0 and 2 * len(_CJK_CHAR.findall(normalized)) >= letters


def shingles(normalized: str, size: int) -> frozenset[int]:
    """The CRC-32 hashes of every character n-gram of ``size`` in a normalized text.

    A text shorter than ``size`` yields one shingle (itself); an empty text none.
    """
    if not normalized:
        return frozenset()
    if len(normalized) <= size:
        return frozenset((zlib.crc32(normalized.encode()),))
    return frozenset(
        zlib.crc32(normalized[i : i + size].encode()) for i in range(len(normalized) - size + 1)
    )


def dice(left: frozenset[int], right: frozenset[int]) -> float:
    """Sørensen–Dice similarity of two shingle sets: 2|A∩B| / (|A|+|B|); 0 when both are empty."""
    total = len(left) + len(right)
    if total == 0:
        return 0.0
    return 2 * len(left & right) / total
