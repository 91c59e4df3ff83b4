"""Errors of the detectors package; each says what to do about it."""

from __future__ import annotations

from loraloop.exceptions import LoraloopError


class DetectorError(LoraloopError):
    """Root of the detectors package's errors."""


class ConversationMismatchError(DetectorError):
    """An event was applied to another conversation's state (a keying bug upstream).

    Look the state up by the event's ``conversation_id``: every source topic is
    keyed by it, so one conversation's state lives in one table entry.
    """


class StateFormatError(DetectorError):
    """A stored ConversationState could not be read back.

    It was written by an incompatible version or corrupted; drop the entry (the
    state only feeds detectors, and a fresh one re-learns from later turns) or
    rebuild the table from its source topics.
    """


class UnsupportedEventError(DetectorError):
    """An event type that has no conversation (a UserProfile) was passed to ``apply``.

    Feed user profiles to the users lookup and pass the tier as ``user_tier``.
    """
