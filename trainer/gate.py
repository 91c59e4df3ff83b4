"""The offline gate: a trained adapter must fix its held-out problems without baseline damage.

Three checks, each against the parent (the parent adapter, or the bare base
model in the first cycle): held-out problem loss improves, baseline-regression
loss rises by at most a relative tolerance; and, as a probe that the adapter is
really applied, greedy decoding of a few held-out prompts with and without the
adapter differs for at least one of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from trainer.config import GateConfig
from trainer.encoding import EncodedSample
from trainer.evaluation import assistant_loss, greedy_generate, probe_prompt

PARENT_ADAPTER = "parent"


class GateNumbers(BaseModel):
    """What the gate measured."""

    heldout_loss: float | None = None
    parent_heldout_loss: float | None = None
    baseline_loss: float | None = None
    parent_baseline_loss: float | None = None
    probes: int = 0
    probes_changed: int = 0


class GateResult(BaseModel):
    """The verdict (``passed``), one reason per check, and the numbers behind them."""

    passed: bool
    reasons: list[str] = Field(default_factory=list)
    numbers: GateNumbers


def decide(numbers: GateNumbers, config: GateConfig) -> GateResult:
    """Pure gate logic over the measured numbers."""
    failures: list[str] = []
    notes: list[str] = []
    new, old = numbers.heldout_loss, numbers.parent_heldout_loss
    if new is None or old is None:
        failures.append("no held-out problem samples: nothing shows the problems were learned")
    elif new < old * (1 - config.min_improvement):
        notes.append(f"held-out problem loss improved {old:.4f} -> {new:.4f}")
    else:
        failures.append(f"held-out problem loss did not improve enough: {old:.4f} -> {new:.4f}")
    base_new, base_old = numbers.baseline_loss, numbers.parent_baseline_loss
    if base_new is None or base_old is None:
        notes.append("no baseline regression samples: baseline check skipped")
    elif base_new <= base_old * (1 + config.baseline_tolerance):
        notes.append(f"baseline loss within tolerance: {base_old:.4f} -> {base_new:.4f}")
    else:
        failures.append(
            f"baseline loss regressed beyond {config.baseline_tolerance:.0%}: "
            f"{base_old:.4f} -> {base_new:.4f}"
        )
    if numbers.probes_changed > 0 or not config.require_probe_change:
        notes.append(f"adapter changed {numbers.probes_changed}/{numbers.probes} probe generations")
    else:
        failures.append(f"adapter changed none of {numbers.probes} probe generations")
    return GateResult(passed=not failures, reasons=failures + notes, numbers=numbers)


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


def run_gate(
    model: Any,
    tokenizer: Any,
    *,
    heldout: Sequence[EncodedSample],
    baseline: Sequence[EncodedSample],
    probe_messages: Sequence[Sequence[Mapping[str, str]]],
    config: GateConfig,
    parent_dir: Path | None = None,
) -> GateResult:
    """Measure the candidate (active adapter), its parent and the bare base; :func:`decide`."""
    pad_id, size = tokenizer.pad_token_id, config.eval_batch_size
    model.eval()
    prompts = [probe_prompt(m) for m in probe_messages[: config.probe_prompts]]
    numbers = GateNumbers(
        heldout_loss=assistant_loss(model, heldout, pad_id=pad_id, batch_size=size),
        baseline_loss=assistant_loss(model, baseline, pad_id=pad_id, batch_size=size),
        probes=len(prompts),
    )
    candidate = greedy_generate(model, tokenizer, prompts, max_new=config.probe_max_new_tokens)
    with _parent_context(model, parent_dir):
        numbers.parent_heldout_loss = assistant_loss(model, heldout, pad_id=pad_id, batch_size=size)
        numbers.parent_baseline_loss = assistant_loss(
            model, baseline, pad_id=pad_id, batch_size=size
        )
    with model.disable_adapter():
        bare = greedy_generate(model, tokenizer, prompts, max_new=config.probe_max_new_tokens)
    numbers.probes_changed = sum(a != b for a, b in zip(candidate, bare, strict=True))
    return decide(numbers, config)
