"""The simulated QA reviewer at work, and the seeded baseline.

``sim-qa`` works the review queue like a person: it reads the captured samples'
transcripts, applies :func:`loraloop.simulation.review` and publishes a QA verdict
per sample on ``llm.qa``; the stream labels the sample from it
(``analytics.pool.label_from_qa``). The demo then marks those labels simulated
(``sample_labels.simulated``, a new revision with the same content).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from loraloop.cli.demo_run.context import DemoContext
from loraloop.cli.demo_run.events import qa_verdict
from loraloop.cli.demo_run.serving import TURNS_PER_EXCHANGE, Ask
from loraloop.simulation import review
from loraloop.simulation.exceptions import DemoError
from loraloop.simulation.reviewer import REVIEWER
from loraloop.simulation.scenario import BASELINE_INTENTS, item_for_text
from trainer.router import BASE_VERSION

CURATOR: Final = "seed-curator"
SEED_REASON: Final = "seed baseline: the scenario's reference answer, curated before launch"

_APPLIED_SQL = (
    "SELECT count() FROM conversations FINAL WHERE conversation_id IN {ids:Array(String)} "
    "AND revision >= {events:Array(UInt64)}[indexOf({ids:Array(String)}, conversation_id)]"
)
_CAPTURED_SQL = (
    "SELECT sample_id, conversation_id FROM pool "
    "WHERE conversation_id IN {ids:Array(String)} AND status = 'captured' ORDER BY sample_id"
)
_LABELLED_SQL = (
    "SELECT count() FROM pool WHERE conversation_id IN {ids:Array(String)} "
    "AND status != 'captured' AND acceptance != ''"
)
_TURNS_SQL = (
    "SELECT conversation_id, role, text FROM turns FINAL "
    "WHERE conversation_id IN {ids:Array(String)} ORDER BY conversation_id, turn_index"
)
_MARK_SIMULATED_SQL = """
INSERT INTO sample_labels (sample_id, revision, acceptance, problem_types, risk_level,
    corrected_response, notes, labelled_by, role, source, simulated, ts,
    transcript_sha256, transcript_turns, signal_turn)
SELECT sample_id, revision + 1, acceptance, problem_types, risk_level, corrected_response,
    notes, labelled_by, role, source, true, ts, transcript_sha256, transcript_turns, signal_turn
FROM sample_labels FINAL
WHERE sample_id IN {ids:Array(String)} AND NOT simulated AND labelled_by = {reviewer:String}
"""


@dataclass
class LabelStats:
    """Samples captured and labelled in a batch, and the problem types found."""

    captured: int = 0
    labelled: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    acceptance: Counter[str] = field(default_factory=Counter)

    def add(self, other: LabelStats) -> None:
        self.captured += other.captured
        self.labelled += other.labelled
        self.problems.update(other.problems)
        self.acceptance.update(other.acceptance)


async def wait_written(ctx: DemoContext, events: Mapping[str, int]) -> None:
    """Wait until capture has applied all ``events[id]`` events of each conversation.

    A conversation's row appears with its first turns (the gateway publishes them as it
    answers), before the feedback, handoffs and outcomes that may capture it: labelling
    once the row exists would miss the samples those make.
    """
    ids = list(events)
    params = {"ids": ids, "events": [events[i] for i in ids]}
    await ctx.wait_count(_APPLIED_SQL, params, len(ids), "conversations with all their events")


async def _transcripts(ctx: DemoContext, ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for conversation, role, text in await ctx.query(_TURNS_SQL, {"ids": ids}):
        found.setdefault(str(conversation), []).append((str(role), str(text)))
    return found


async def _review(
    ctx: DemoContext, targets: list[tuple[str | None, str]], stats: LabelStats
) -> list[str]:
    """Publish a verdict per (sample_id, conversation); returns the ids that become samples."""
    chats = await _transcripts(ctx, [c for _, c in targets])
    now = datetime.now(UTC)
    messages, labelled = [], []
    for sample_id, conversation in targets:
        turns = chats.get(conversation, [])
        item = item_for_text(ctx.items, turns[0][1]) if turns else None
        if item is None:
            continue
        verdict = review(item, [t for r, t in turns if r == "assistant"], ctx.sim.rules)
        stats.acceptance[verdict.acceptance] += 1
        stats.problems.update(verdict.problem_types)
        messages.append(qa_verdict(conversation, sample_id, verdict, REVIEWER, now))
        if sample_id is not None or verdict.acceptance != "Accept":
            labelled.append(conversation)
    await ctx.publish(messages)
    return labelled


async def _await_labels(ctx: DemoContext, conversations: list[str]) -> None:
    await ctx.wait_count(_LABELLED_SQL, {"ids": conversations}, len(conversations), "labels")
    rows = await ctx.query(
        "SELECT sample_id FROM pool WHERE conversation_id IN {ids:Array(String)}",
        {"ids": conversations},
    )
    warehouse = ctx.running.warehouse
    params = {"ids": [str(r[0]) for r in rows], "reviewer": REVIEWER}
    await warehouse.run(warehouse.command, _MARK_SIMULATED_SQL, params)


async def label_captured(ctx: DemoContext, conversation_ids: list[str]) -> LabelStats:
    """Review every captured sample among ``conversation_ids``; wait until labelled."""
    stats = LabelStats()
    rows = await ctx.query(_CAPTURED_SQL, {"ids": conversation_ids})
    stats.captured = len(rows)
    if not rows:
        return stats
    labelled = await _review(ctx, [(str(s), str(c)) for s, c in rows], stats)
    await _await_labels(ctx, labelled)
    stats.labelled = len(labelled)
    return stats


async def seed_conversations(ctx: DemoContext) -> list[str]:
    """The curator asks each launch-FAQ prompt at the gateway, which serves the base model
    before any rollout and publishes the turns."""
    items = [i for i in ctx.items if i.intent in BASELINE_INTENTS and not i.evaluation]
    asks = [Ask(CURATOR, ctx.next_id("seed-"), (("user", i.text),)) for i in items]
    answers = await ctx.gateway.ask_all(asks)
    served = {a.version for a in answers}
    if served != {BASE_VERSION}:
        msg = f"the seed conversations were served by {sorted(served)}, not the base model alone"
        raise DemoError(msg)
    await ctx.gateway.flushed()
    return [a.conversation_id for a in asks]


async def seed_baseline(ctx: DemoContext) -> dict[str, Any]:
    """Label the seed conversations (sim-qa); an approver moves them into core."""
    ids = await seed_conversations(ctx)
    await wait_written(ctx, dict.fromkeys(ids, TURNS_PER_EXCHANGE))
    stats = LabelStats()
    labelled = await _review(ctx, [(None, c) for c in ids], stats)
    if labelled:
        await _await_labels(ctx, labelled)
    promoted = 0
    if ctx.approver and labelled:
        promoted = await promote_to_core(ctx, labelled)
    return {
        "conversations": len(ids),
        "curator": CURATOR,
        "labelled_problems": len(labelled),
        "moved_to_core": promoted,
        "approver": ctx.approver,
    }


async def promote_to_core(ctx: DemoContext, conversations: list[str]) -> int:
    """The approver moves the seed samples problem → candidate → secondary → core."""
    from analytics.pool import approve
    from loraloop.lifecycle import Role, SampleStatus

    rows = await ctx.query(
        "SELECT sample_id FROM pool WHERE conversation_id IN {ids:Array(String)} "
        "AND status = 'problem' ORDER BY sample_id",
        {"ids": conversations},
    )
    warehouse = ctx.running.warehouse
    approver = ctx.approver or ""
    for (sample_id,) in rows:
        for tier in (
            SampleStatus.PROBLEM,
            SampleStatus.CANDIDATE_BASELINE,
            SampleStatus.SECONDARY_BASELINE,
        ):
            await warehouse.run(
                lambda s=str(sample_id), f=tier: approve(
                    warehouse, s, from_status=f, actor=approver, roles=[Role.APPROVER],
                    reason=SEED_REASON,
                )
            )  # fmt: skip
    return len(rows)
