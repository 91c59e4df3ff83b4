"""``evolve``: :func:`dataclasses.replace` for the frozen, slotted states of the hot path.

The stream updates a conversation's state a few times per event; the standard
``replace`` re-inspects the class's fields and re-runs ``__init__`` on every call,
which made it the top item of the capture agent's profile. ``evolve`` copies the
slots directly (no validation is lost: these classes have no ``__post_init__``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")

_set = object.__setattr__


@cache
def _fields(cls: Hashable) -> tuple[tuple[str, ...], frozenset[str]]:
    if not isinstance(cls, type) or not dataclasses.is_dataclass(cls):
        msg = f"evolve needs a dataclass, not {cls!r}"
        raise TypeError(msg)
    if hasattr(cls, "__post_init__"):
        msg = f"evolve needs a dataclass without __post_init__, not {cls.__name__}"
        raise TypeError(msg)
    names = tuple(f.name for f in dataclasses.fields(cls))
    return names, frozenset(names)


def evolve(obj: T, **changes: Any) -> T:
    """A copy of the dataclass ``obj`` with ``changes`` applied (like ``replace``)."""
    cls: Any = type(obj)
    names, known = _fields(cls)
    if not known.issuperset(changes):
        msg = f"{cls.__name__} has no field {sorted(changes.keys() - known)[0]!r}"
        raise TypeError(msg)
    new: T = object.__new__(cls)
    for name in names:
        _set(new, name, changes[name] if name in changes else getattr(obj, name))
    return new
