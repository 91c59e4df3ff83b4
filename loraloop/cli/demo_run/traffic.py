"""Simulated traffic: users chat with the gateway, the routed version replies, users react.

Each conversation: the user's question (turn 0), sent to the demo's gateway with the
``openai`` client, and the reply of the version the router assigns the user (turn 1);
the gateway publishes both turns. Then the judge's reaction
(``loraloop.simulation.judge``): feedback, a click and conversion, or a second ask
through the gateway (turns 2-3) and, if that fails too, a demand for a human (turn 4),
a handoff and the human agent's reference answer (turn 5). Those reactions are what the
chatbot's own backend publishes through the producer (``events``), once the gateway's
turns are handed to the broker, with event times after them.

Each batch also tallies, per version and per prompt group (``seen``: a family that
may be trained; ``unseen``: an evaluation family no cycle trains on), the
conversations whose replies show each problem type by the QA reviewer's rules: the
demo's ground truth for "did the fix generalise to phrasings it never trained on".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from loraloop.cli.demo_run.context import DemoContext, SimUser
from loraloop.cli.demo_run.events import ConversationEvents
from loraloop.cli.demo_run.serving import TURNS_PER_EXCHANGE, Answer, Ask, Messages
from loraloop.simulation import ScenarioItem, judge_reply
from loraloop.simulation.judge import demands_human
from loraloop.simulation.reviewer import problem_types_of
from loraloop.simulation.scenario import HUMAN_DEMAND, REPEAT_SUFFIX

USER, ASSISTANT = "user", "assistant"
SEEN, UNSEEN = "seen", "unseen"


def prompt_group(item: ScenarioItem) -> str:
    """``unseen`` for an evaluation family (never trained), else ``seen``."""
    return UNSEEN if item.evaluation else SEEN


@dataclass
class BatchStats:
    """What one traffic batch did: conversations per version and reactions per rule, and
    per (version, prompt group) the conversations and those showing each problem type."""

    conversation_ids: list[str] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    """Per conversation, the events published for it (the gateway's turns and the rest)."""
    per_version: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    groups: Counter[tuple[str, str]] = field(default_factory=Counter)
    problems: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def tally(self, chat: _Chat, types: list[str]) -> None:
        """Count one finished conversation under its version and prompt group."""
        group = prompt_group(chat.item)
        self.groups[chat.version, group] += 1
        for problem_type in types:
            self.problems[chat.version, group, problem_type] += 1


@dataclass
class _Chat:
    conversation_id: str
    user: SimUser
    item: ScenarioItem
    first: Messages
    version: str = ""
    """The version the gateway served (its answer says)."""
    reply: str = ""
    second: str | None = None


async def _ask(ctx: DemoContext, chats: list[_Chat], contexts: list[Messages]) -> list[Answer]:
    """Each chat's context sent to the gateway; the answers in the same order."""
    asks = [Ask(c.user.user_id, c.conversation_id, m) for c, m in zip(chats, contexts, strict=True)]
    return await ctx.gateway.ask_all(asks)


def _open(ctx: DemoContext, count: int, prefix: str) -> list[_Chat]:
    chats = []
    for _ in range(count):
        user = ctx.rng.choice(ctx.users)
        item = ctx.rng.choice(ctx.items)
        chats.append(_Chat(ctx.next_id(prefix), user, item, ((USER, item.text),)))
    return chats


def _tally(ctx: DemoContext, chats: list[_Chat], stats: BatchStats) -> None:
    """Judge every finished conversation by the QA reviewer's rules and count it."""
    for chat in chats:
        replies = [chat.reply] if chat.second is None else [chat.reply, chat.second]
        stats.tally(chat, problem_types_of(chat.item, replies, ctx.sim.rules))


def _published(chats: list[_Chat], builders: dict[str, ConversationEvents]) -> dict[str, int]:
    """Per conversation, the gateway's turns and the events the demo builds for it."""
    return {
        c.conversation_id: TURNS_PER_EXCHANGE * (1 if c.second is None else 2)
        + len(builders[c.conversation_id].messages)
        for c in chats
    }


async def run_batch(ctx: DemoContext, count: int, prefix: str) -> BatchStats:
    """Simulate and publish ``count`` conversations; returns what happened."""
    chats = _open(ctx, count, prefix)
    for chat, answer in zip(chats, await _ask(ctx, chats, [c.first for c in chats]), strict=True):
        chat.reply, chat.version = answer.text, answer.version
    start = datetime.now(UTC)
    stats = BatchStats()
    builders: dict[str, ConversationEvents] = {}
    again: list[tuple[_Chat, Messages]] = []
    for chat in chats:
        events = ConversationEvents(chat.conversation_id, chat.user.user_id, chat.user.tier, start)
        builders[chat.conversation_id] = events
        reaction = judge_reply(chat.item, chat.reply, ctx.sim, ctx.rng)
        stats.rules[reaction.rule] += 1
        stats.per_version[chat.version] += 1
        stats.conversation_ids.append(chat.conversation_id)
        if reaction.feedback:
            events.feedback(reaction.feedback, 1)
        if reaction.cta_click:
            events.outcome("cta_click", 1.0)
        if reaction.conversion:
            events.outcome("conversion", ctx.sim.course_price)
        if reaction.ask_again:
            repeat = chat.item.text + REPEAT_SUFFIX[chat.item.lang]
            again.append((chat, (*chat.first, (ASSISTANT, chat.reply), (USER, repeat))))
    if again:
        answers = await _ask(ctx, [c for c, _ in again], [m for _, m in again])
        after = datetime.now(UTC)
        for (chat, _), answer in zip(again, answers, strict=True):
            events = builders[chat.conversation_id]
            events.resume(after)  # what follows the second reply comes after it
            chat.second = second = answer.text
            if demands_human(chat.item, second, ctx.sim):
                stats.rules["handoff"] += 1
                events.turn(4, USER, HUMAN_DEMAND[chat.item.lang])
                events.handoff(4, "the assistant did not answer")
                events.turn(5, "human_agent", chat.item.reference)
    _tally(ctx, chats, stats)
    stats.events = _published(chats, builders)
    await ctx.gateway.flushed()
    await ctx.publish([m for b in builders.values() for m in b.messages])
    return stats
