"""``Progress.caught_up``: only a partition read and written to its end may go idle."""

from __future__ import annotations

from streams.progress import Progress

TP = ("llm.turns", 0)


def _progress(highwater: int | None) -> Progress:
    return Progress(highwater=lambda key: highwater if key == TP else None)


def test_an_unknown_high_watermark_is_not_caught_up() -> None:
    progress = _progress(None)
    progress.mark(*TP, 99)
    assert not progress.caught_up(TP)


def test_written_up_to_the_high_watermark_is_caught_up_and_taken_only_is_not() -> None:
    progress = _progress(10)
    progress.take(*TP, 7)
    assert not progress.caught_up(TP)  # taken, not written: the batch is still in flight
    progress.mark(*TP, 8)
    assert not progress.caught_up(TP)  # offset 9 is left
    progress.mark(*TP, 9)
    assert progress.caught_up(TP)


def test_a_partition_nothing_was_taken_from_goes_by_its_fetch_position() -> None:
    progress = _progress(10)
    assert not progress.caught_up(TP)  # position not read yet
    progress.positions[TP] = 4
    assert not progress.caught_up(TP)  # a backlog of six records
    progress.positions[TP] = 10
    assert progress.caught_up(TP)
    progress.moved_in({TP})
    assert not progress.caught_up(TP)  # from another worker: measured afresh


def test_an_empty_partition_is_caught_up_once_its_high_watermark_is_known() -> None:
    assert _progress(0).caught_up(TP)
