"""Read JSONL event files: one object a line with a ``type`` field and the contract's fields.

Every line is checked; a bad line becomes a :class:`LineError` that names the
line number and the field at fault, and never hides the good lines around it.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from loraloop.events import KINDS, Contract, Kind, describe_error, first_field, oversize_error


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """A line that satisfied its contract."""

    line_no: int
    kind: Kind
    event: Contract
    raw: bytes

    @property
    def key(self) -> str:
        return str(getattr(self.event, self.kind.key_field))


@dataclass(frozen=True, slots=True)
class LineError:
    """A line that did not; ``kind`` is set when at least the ``type`` was understood."""

    line_no: int
    field: str | None
    message: str
    raw: bytes
    kind: Kind | None = None

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.message}"


def decode_object(
    line_no: int, raw: bytes, *, needs: str, not_object: str
) -> dict[str, Any] | LineError:
    """One line as a JSON object, or the error naming what was wrong: too large, not JSON
    (``needs`` says what the object must hold), or not an object (``not_object``)."""
    if (too_big := oversize_error(len(raw))) is not None:
        return LineError(line_no, None, too_big, raw)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        msg = (
            f"not JSON: each line must be one JSON object with {needs}; this one is not "
            f"valid JSON (at column {e.colno})"
        )
        return LineError(line_no, None, msg, raw)
    if not isinstance(obj, dict):
        return LineError(line_no, None, not_object, raw)
    return obj


def parse_line(line_no: int, raw: bytes) -> ParsedLine | LineError:
    """Decode and validate one line of a JSONL event file."""
    obj = decode_object(
        line_no, raw, needs='a "type"', not_object="<payload>: expected a JSON object"
    )
    if isinstance(obj, LineError):
        return obj
    type_name = obj.pop("type", None)
    if type_name is None:
        msg = f"type: missing; use one of {', '.join(KINDS)}"
        return LineError(line_no, "type", msg, raw)
    kind = KINDS.get(type_name) if isinstance(type_name, str) else None
    if kind is None:
        msg = f"type: unknown event type {type_name!r}; use one of {', '.join(KINDS)}"
        return LineError(line_no, "type", msg, raw)
    try:
        event = kind.model.model_validate(obj)
    except ValidationError as e:
        return LineError(line_no, first_field(e), describe_error(e), raw, kind)
    return ParsedLine(line_no, kind, event, raw)


def read_events(path: Path) -> Iterator[ParsedLine | LineError]:
    """Parse every non-blank line of ``path`` in order (1-based line numbers).

    A UTF-8 byte order mark (as some Windows editors write) is not part of the first line.
    """
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            stripped = (raw.removeprefix(codecs.BOM_UTF8) if line_no == 1 else raw).strip()
            if stripped:
                yield parse_line(line_no, stripped)


def strip_type(raw: bytes) -> bytes:
    """The payload as published: the line without its routing ``type`` field.

    Falls back to the raw bytes when they are not a JSON object, so a bad line
    still reaches the dead-letter path unchanged.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if isinstance(obj, dict):
        obj.pop("type", None)
        return orjson.dumps(obj)
    return raw
