"""The offline gate: the candidate must fix unseen problem prompts without breaking the baseline.

Read from the dataset directory alone (:func:`gate_prompts`): the unseen problem
prompts are the held-out families' contexts and the evaluation-set phrasings
whose types were trained this cycle; the baseline prompts are the regression
families' contexts. The parent (the parent adapter, or the bare base model in the
first cycle) and the candidate answer every prompt greedily, the configured judge
judges each reply, and :func:`trainer.behaviour.decide` gives the verdict. The
assistant-token losses of the held-out and regression samples are measured for
both versions too, as diagnostics: they no longer decide anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, Field

from trainer.behaviour import (
    BehaviourReport,
    GatePrompt,
    Judged,
    Source,
    decide,
    report,
    tally,
)
from trainer.config import GateConfig
from trainer.dataset import SPLIT_BASELINE, SPLIT_HELDOUT, SPLIT_TRAIN
from trainer.encoding import EncodedSample
from trainer.evalset import EvaluationSet
from trainer.evaluation import assistant_loss, generate_replies, merged_adapter, probe_prompt
from trainer.judging import Judge
from trainer.records import Tier

PARENT_ADAPTER = "parent"
REPLIES_FILE = "gate_replies.json"
"""A version's own gate replies, by :func:`reply_key`: read back when it is a parent."""

GateProgress = Callable[[int, int], None]
"""Told (replies generated, replies to generate) after every generation batch."""


class GateNumbers(BaseModel):
    """Assistant-token losses of both versions: diagnostics, not part of the verdict."""

    heldout_loss: float | None = None
    parent_heldout_loss: float | None = None
    baseline_loss: float | None = None
    parent_baseline_loss: float | None = None


class GateResult(BaseModel):
    """gate.json: the verdict, one reason per check, the behaviour evidence and the losses."""

    passed: bool
    reasons: list[str] = Field(default_factory=list)
    behaviour: BehaviourReport
    numbers: GateNumbers
    replies: dict[str, str] = Field(default_factory=dict, exclude=True)
    """The candidate's reply to every prompt, by :func:`reply_key` (written apart)."""
    parent_replies: dict[str, str] = Field(default_factory=dict, exclude=True)
    """The parent's, likewise (kept for the bare base, whose gate replies recur)."""


@dataclass(frozen=True)
class GatePrompts:
    """What the gate asks both versions, and the problem types the train split targets."""

    unseen: list[GatePrompt]
    baseline: list[GatePrompt]
    targeted: frozenset[str]

    @property
    def all(self) -> list[GatePrompt]:
        """Unseen problem prompts, then baseline prompts."""
        return self.unseen + self.baseline


def _row_prompt(row: Mapping[str, Any], source: Source) -> GatePrompt:
    return GatePrompt(
        messages=probe_prompt(row["messages"]),
        family=str(row.get("family") or row["sample_id"]),
        problem_types=tuple(sorted(row.get("problem_types") or ())),
        source=source,
    )


def gate_prompts(rows: Sequence[Mapping[str, Any]], evaluation: EvaluationSet) -> GatePrompts:
    """Held-out and evaluation prompts of the trained types, and the regression prompts."""
    targeted = frozenset(
        problem_type
        for row in rows
        if row["split"] == SPLIT_TRAIN and row.get("tier") == Tier.PROBLEM.value
        for problem_type in row.get("problem_types") or ()
    )
    unseen = [_row_prompt(r, Source.HELDOUT) for r in rows if r["split"] == SPLIT_HELDOUT]
    unseen += [
        GatePrompt(
            messages=[m.model_dump() for m in p.messages],
            family=p.family,
            problem_types=tuple(sorted(p.problem_types)),
            source=Source.EVALUATION,
        )
        for p in evaluation.prompts
        if targeted & set(p.problem_types)
    ]
    baseline = [_row_prompt(r, Source.BASELINE) for r in rows if r["split"] == SPLIT_BASELINE]
    return GatePrompts(unseen=unseen, baseline=baseline, targeted=targeted)


def reply_key(messages: Sequence[Mapping[str, str]], max_new: int) -> str:
    """What a greedy reply depends on besides the weights: the conversation and its length cap."""
    canonical = [[m["role"], m["content"]] for m in messages]
    return hashlib.sha256(orjson.dumps([max_new, canonical])).hexdigest()


def read_replies(path: Path) -> dict[str, str]:
    """Gate replies kept in ``path`` (empty when there are none, or they are unreadable)."""
    try:
        replies = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return replies if isinstance(replies, dict) else {}


def _parent_context(model: Any, parent_dir: Path | None) -> AbstractContextManager[Any]:
    """Switch ``model`` to the parent: the parent adapter, or adapters disabled."""
    if parent_dir is None:
        context: AbstractContextManager[Any] = model.disable_adapter()
        return context
    return _ParentAdapter(model, parent_dir)


class _ParentAdapter:
    """Load the parent adapter next to the candidate and make it active while inside."""

    def __init__(self, model: Any, parent_dir: Path) -> None:
        self._model, self._dir = model, parent_dir
        self._active = model.active_adapter

    def __enter__(self) -> Any:
        if PARENT_ADAPTER not in self._model.peft_config:
            self._model.load_adapter(str(self._dir), adapter_name=PARENT_ADAPTER)
        self._model.set_adapter(PARENT_ADAPTER)
        return self._model

    def __exit__(self, *exc: object) -> None:
        self._model.set_adapter(self._active)


class _Measure:
    """Replies and losses of whichever version is active, counting generated replies."""

    def __init__(
        self, model: Any, tokenizer: Any, config: GateConfig, on_progress: GateProgress | None
    ) -> None:
        self._model, self._tokenizer, self._config = model, tokenizer, config
        self._on_progress = on_progress
        self.total, self._done = 0, 0

    def replies(self, prompts: Sequence[GatePrompt]) -> list[str]:
        return generate_replies(
            self._model,
            self._tokenizer,
            [p.messages for p in prompts],
            max_new=self._config.behaviour_max_new_tokens,
            batch_size=self._config.eval_batch_size,
            on_batch=self._advance,
        )

    def loss(self, samples: Sequence[EncodedSample]) -> float | None:
        pad_id, size = self._tokenizer.pad_token_id, self._config.eval_batch_size
        return assistant_loss(self._model, samples, pad_id=pad_id, batch_size=size)

    def start(self, total: int) -> None:
        """Announce how many replies the gate will generate."""
        self.total = total
        self._advance(0)

    def _advance(self, replies: int) -> None:
        self._done += replies
        if self._on_progress is not None:
            self._on_progress(self._done, self.total)


def run_gate(
    model: Any,
    tokenizer: Any,
    *,
    prompts: GatePrompts,
    judge: Judge,
    heldout: Sequence[EncodedSample],
    baseline: Sequence[EncodedSample],
    config: GateConfig,
    parent_dir: Path | None = None,
    on_progress: GateProgress | None = None,
    parent_replies: Mapping[str, str] | None = None,
) -> GateResult:
    """Both versions answer every gate prompt (candidate: the active adapter); judge; decide.

    ``parent_replies`` (by :func:`reply_key`) are the parent's replies to prompts it
    already answered (as a candidate, or as the base in an earlier gate: the evaluation
    set recurs every cycle); they are used instead of generated again, since greedy
    decoding of the same weights gives the same reply, up to the rounding of another
    batch. The result carries both versions' replies for the caller to keep.
    """
    model.eval()
    asked = prompts.all
    keys = [reply_key(p.messages, config.behaviour_max_new_tokens) for p in asked]
    known = parent_replies or {}
    todo = [p for p, key in zip(asked, keys, strict=True) if key not in known]
    measure = _Measure(model, tokenizer, config, on_progress)
    measure.start(len(asked) + len(todo))
    with merged_adapter(model):
        candidate = measure.replies(asked)
    numbers = GateNumbers(heldout_loss=measure.loss(heldout), baseline_loss=measure.loss(baseline))
    with _parent_context(model, parent_dir):
        if parent_dir is None:  # adapters disabled: the bare base
            generated = measure.replies(todo)
        else:
            with merged_adapter(model):
                generated = measure.replies(todo)
        numbers.parent_heldout_loss = measure.loss(heldout)
        numbers.parent_baseline_loss = measure.loss(baseline)
    fresh = iter(generated)
    parent = [known[key] if key in known else next(fresh) for key in keys]
    judged = [
        Judged(
            prompt=p,
            parent_reply=old,
            candidate_reply=new,
            parent_problems=judge.problems(p.messages, old),
            candidate_problems=judge.problems(p.messages, new),
        )
        for p, old, new in zip(asked, parent, candidate, strict=True)
    ]
    counts = tally(judged, targeted=prompts.targeted)
    verdict = decide(counts, config)
    return GateResult(
        passed=verdict.passed,
        reasons=verdict.reasons + loss_notes(numbers),
        behaviour=report(judged, counts, verdict),
        numbers=numbers,
        replies=dict(zip(keys, candidate, strict=True)),
        parent_replies=dict(zip(keys, parent, strict=True)),
    )


def loss_notes(numbers: GateNumbers) -> list[str]:
    """The loss diagnostics as reason lines (they never fail the gate)."""
    pairs = [
        ("held-out problem", numbers.parent_heldout_loss, numbers.heldout_loss),
        ("baseline regression", numbers.parent_baseline_loss, numbers.baseline_loss),
    ]
    return [
        f"diagnostic, not decisive: {name} loss {old:.4f} -> {new:.4f}"
        for name, old, new in pairs
        if old is not None and new is not None
    ]
