"""A label's transcript snapshot and what counts as a change (pure; issue 16 #5)."""

from __future__ import annotations

from analytics.snapshots import NO_SIGNAL, Snapshot, Turn, compare

TURNS = (
    Turn("e0", 0, "user", "Where is my order?"),
    Turn("e1", 1, "assistant", "It arrives tomorrow, guaranteed."),
    Turn("e2", 2, "user", "You said that yesterday."),
)


def _snap(signal_turn: int | None = 2) -> Snapshot:
    return Snapshot.of(TURNS, signal_turn)


def test_a_stored_snapshot_reads_back_with_the_same_hash() -> None:
    snap = _snap()
    digest, prints, anchor = snap.row()
    back = Snapshot.stored(digest, prints, anchor)
    assert back == snap
    assert back is not None
    assert back.sha256 == digest
    assert Snapshot.stored("", [], NO_SIGNAL) is None  # a label older than snapshots


def test_hash_names_turns_and_anchor_not_their_storage_order() -> None:
    assert Snapshot.of(reversed(TURNS), 2).sha256 == _snap().sha256
    assert _snap(None).sha256 != _snap().sha256
    edited = (TURNS[0], Turn("e1", 1, "assistant", "It arrives tomorrow."), TURNS[2])
    assert Snapshot.of(edited, 2).sha256 != _snap().sha256


def test_unchanged_conversation_is_no_change() -> None:
    drift = compare(_snap(), TURNS)
    assert not drift.changed
    assert drift.frozen == TURNS


def test_expired_text_is_no_change_and_stays_empty() -> None:
    expired = (Turn("e0", 0, "user", ""), *TURNS[1:])
    drift = compare(_snap(), expired)
    assert not drift.changed
    assert drift.frozen == expired


def test_changed_text_loses_the_labelled_transcript() -> None:
    changed = (TURNS[0], Turn("e1", 1, "assistant", "Full refund for all!"), TURNS[2])
    drift = compare(_snap(), changed)
    assert drift.changed
    assert drift.frozen is None
    assert drift.changes == ("the text of turn 1 (event e1) changed",)
    assert "no longer exists" in drift.reason


def test_moved_or_missing_turns_lose_the_labelled_transcript() -> None:
    moved = (TURNS[0], Turn("e1", 5, "assistant", TURNS[1].text), TURNS[2])
    assert compare(_snap(), moved).frozen is None
    assert compare(_snap(), TURNS[:2]).changes == ("turn 2 (event e2) is gone",)
    assert compare(_snap(), TURNS[:2]).frozen is None


def test_added_events_keep_the_labelled_turns_only() -> None:
    added = (*TURNS, Turn("x1", 1, "assistant", "injected"), Turn("x9", 9, "user", "later"))
    drift = compare(_snap(), added)
    assert drift.changes == (
        "event x1 was added at existing turn 1",
        "event x9 was added at new turn 9",
    )
    assert drift.frozen == TURNS
    assert "exports keep the labelled turns only" in drift.reason


def test_reason_stays_one_bounded_line() -> None:
    many = (*TURNS, *(Turn(f"x{i}", 10 + i, "user", "spam") for i in range(50)))
    reason = compare(_snap(), many).reason
    assert "\n" not in reason
    assert "and 45 more" in reason
