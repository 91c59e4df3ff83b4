"""high_value_downvote: thumbs_down from high_value / vip users, tier from event or lookup."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from detectors import Detector
from loraloop.events import FeedbackKind, Tier

if TYPE_CHECKING:
    from conftest import Chat


@pytest.mark.parametrize("tier", [Tier.HIGH_VALUE, Tier.VIP])
def test_downvote_with_tier_on_the_event_fires(chat: Chat, tier: Tier) -> None:
    chat.user("推荐一款手机")
    chat.bot(version="v2")

    signals = chat.feedback(FeedbackKind.THUMBS_DOWN, tier=tier, comment="没用")

    assert [s.detector for s in signals] == [Detector.HIGH_VALUE_DOWNVOTE]
    assert signals[0].evidence["tier"] == tier.value
    assert signals[0].evidence["tier_source"] == "event"
    assert signals[0].evidence["comment"] == "没用"
    assert signals[0].model_version == "v2"
    assert signals[0].turn_index == 1


def test_tier_from_the_lookup_when_the_event_has_none(chat: Chat) -> None:
    signals = chat.feedback(FeedbackKind.THUMBS_DOWN, lookup=Tier.VIP)

    assert [s.evidence["tier_source"] for s in signals] == ["lookup"]


def test_the_event_tier_wins_over_the_lookup(chat: Chat) -> None:
    assert chat.feedback(FeedbackKind.THUMBS_DOWN, tier=Tier.STANDARD, lookup=Tier.VIP) == []


def test_tier_remembered_from_an_earlier_event(chat: Chat) -> None:
    chat.user("hello", user_tier=Tier.HIGH_VALUE)

    signals = chat.feedback(FeedbackKind.THUMBS_DOWN)

    assert [s.evidence["tier_source"] for s in signals] == ["state"]


@pytest.mark.parametrize("tier", [Tier.STANDARD, None])
def test_standard_or_unknown_users_do_not_fire(chat: Chat, tier: Tier | None) -> None:
    assert chat.feedback(FeedbackKind.THUMBS_DOWN, tier=tier) == []


def test_upvotes_do_not_fire(chat: Chat) -> None:
    assert chat.feedback(FeedbackKind.THUMBS_UP, tier=Tier.VIP) == []


def test_fires_once_per_conversation(chat: Chat) -> None:
    chat.feedback(FeedbackKind.THUMBS_DOWN, tier=Tier.VIP)
    chat.feedback(FeedbackKind.THUMBS_DOWN, tier=Tier.VIP)

    assert chat.fired() == [Detector.HIGH_VALUE_DOWNVOTE]
