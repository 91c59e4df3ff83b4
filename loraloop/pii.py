"""Find and mask personal data in conversation text. Pure: no I/O.

Masking happens before text enters any training dataset, and in the console for
users without the PII permission. What is found, and what it becomes:

- ``[EMAIL]``: ``local@domain.tld`` (ASCII).
- ``[ID]``: a mainland China resident ID, 18 characters: region code, a real
  birth date from 1900 to today, and a valid GB 11643 (ISO 7064) check
  character, digit or X.
- ``[CARD]``: a bank card, 13-19 digits, contiguous or in groups of 4 (Amex
  4-6-5) separated by one space or dash, first digit 2-6 (the issuer ranges in
  use), valid Luhn checksum.
- ``[PHONE]``: a mainland China mobile, ``1[3-9]`` and 9 digits, optionally
  after ``+86`` / ``0086``, with space or dash separators; or an international
  ``+CC`` number of at least 8 digits in groups separated by spaces, dashes,
  dots or parentheses.

Numbers are only taken whole (never digits inside a longer run of digits or
letters, so ``SO2024...`` order numbers stay); full-width digits, ``＋``, ``－``,
``＠`` and the ideographic space (Chinese input methods) read as their ASCII
forms; the checksums keep order numbers, prices (``¥1999``, ``$299``), years,
dates and quantities unmasked. Where two findings overlap, the earlier wins,
then the longer, then the kind listed first above. Not covered: 15-digit
first-generation IDs (expired since 2013), landlines without ``+CC``, names and
street addresses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Final


class PiiKind(StrEnum):
    """What a match is; the value is used in the replacement token."""

    EMAIL = "EMAIL"
    ID = "ID"
    CARD = "CARD"
    PHONE = "PHONE"

    @property
    def token(self) -> str:
        return f"[{self.value}]"


@dataclass(frozen=True, slots=True)
class Match:
    """One finding: ``text[start:end]`` is ``value``."""

    kind: PiiKind
    start: int
    end: int
    value: str


_NUMBER_START: Final = r"(?<![\dA-Za-z_+])"
"""A number is taken whole: no digit, Latin letter or ``+`` right before it."""

_NUMBER_END: Final = r"(?![\dA-Za-z_])"

EMAIL_RE: Final = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    r"(?![A-Za-z0-9-])",
    re.ASCII,
)


def _number(pattern: str) -> re.Pattern[str]:
    return re.compile(_NUMBER_START + pattern + _NUMBER_END, re.ASCII)


ID_RE: Final = _number(r"[1-9]\d{16}[\dXx]")
CARD_RE: Final = _number(
    r"(?:\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{5}|\d{13,19})"
)
CN_MOBILE_RE: Final = _number(r"(?:(?:\+86|0086)[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}")
INTL_PHONE_RE: Final = _number(r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){1,6}")

ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
"""GB 11643-1999 weights of the first 17 ID digits."""

ID_CHECK_CHARS: Final = "10X98765432"
"""Check character by (weighted sum mod 11)."""

ID_MODULUS: Final = 11
ID_BIRTH_SLICE: Final = slice(6, 14)
ID_EARLIEST_BIRTH_YEAR: Final = 1900

CARD_DIGITS: Final = range(13, 20)
CARD_FIRST_DIGITS: Final = frozenset("23456")
"""Visa 4, Mastercard 2/5, Amex and JCB 3, UnionPay and Discover 6."""

LUHN_MODULUS: Final = 10
INTL_PHONE_MIN_DIGITS: Final = 8
"""Fewer digits after a ``+`` is more likely an amount or a count than a phone.

No upper bound: a number that runs into a following one is masked whole rather
than left in the clear."""


_FULL_WIDTH: Final = str.maketrans(
    {**{chr(0xFF10 + d): str(d) for d in range(10)}, "＋": "+", "－": "-", "＠": "@", "\u3000": " "}
)
"""One character for one, so positions in the folded text are positions in the original."""


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdecimal())


def id_checksum_ok(number: str) -> bool:
    """True when the 18th character is the GB 11643 check character of the first 17."""
    total = sum(int(d) * w for d, w in zip(number[:17], ID_WEIGHTS, strict=True))
    return ID_CHECK_CHARS[total % ID_MODULUS] == number[17].upper()


def plausible_birth_date(yyyymmdd: str, *, today: date | None = None) -> bool:
    """True for a real calendar date from 1900 up to ``today``."""
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    latest = today or datetime.now(UTC).date()
    return ID_EARLIEST_BIRTH_YEAR <= born.year and born <= latest


def luhn_ok(digits: str) -> bool:
    """True when a digit string passes the Luhn checksum."""
    total = 0
    for position, ch in enumerate(reversed(digits)):
        value = int(ch)
        if position % 2:
            value = sum(divmod(value * 2, LUHN_MODULUS))
        total += value
    return total % LUHN_MODULUS == 0


def _is_id(value: str) -> bool:
    return plausible_birth_date(value[ID_BIRTH_SLICE]) and id_checksum_ok(value)


def _is_card(value: str) -> bool:
    digits = _digits(value)
    return len(digits) in CARD_DIGITS and digits[0] in CARD_FIRST_DIGITS and luhn_ok(digits)


def _is_intl_phone(value: str) -> bool:
    return len(_digits(value)) >= INTL_PHONE_MIN_DIGITS


def _always(_value: str) -> bool:
    return True


_FINDERS: Final[tuple[tuple[PiiKind, re.Pattern[str], Callable[[str], bool]], ...]] = (
    (PiiKind.EMAIL, EMAIL_RE, _always),
    (PiiKind.ID, ID_RE, _is_id),
    (PiiKind.CARD, CARD_RE, _is_card),
    (PiiKind.PHONE, CN_MOBILE_RE, _always),
    (PiiKind.PHONE, INTL_PHONE_RE, _is_intl_phone),
)
_PRIORITY: Final = {kind: rank for rank, kind in enumerate(PiiKind)}


def _candidates(text: str) -> Iterator[Match]:
    folded = text.translate(_FULL_WIDTH)
    for kind, pattern, check in _FINDERS:
        for found in pattern.finditer(folded):
            if check(found.group()):
                yield Match(kind, found.start(), found.end(), text[found.start() : found.end()])


def find_pii(text: str) -> list[Match]:
    """Non-overlapping findings in ``text``, in order of position."""
    ranked = sorted(_candidates(text), key=lambda m: (m.start, m.start - m.end, _PRIORITY[m.kind]))
    kept: list[Match] = []
    for match in ranked:
        if not kept or match.start >= kept[-1].end:
            kept.append(match)
    return kept


def mask_pii(text: str) -> str:
    """``text`` with every finding replaced by its token (``[PHONE]``, ``[EMAIL]``, ...)."""
    parts: list[str] = []
    cursor = 0
    for match in find_pii(text):
        parts.append(text[cursor : match.start])
        parts.append(match.kind.token)
        cursor = match.end
    parts.append(text[cursor:])
    return "".join(parts)
