"""The evaluation set: fixed, versioned phrasings per problem type that no cycle trains on.

A JSON-lines file, one prompt per line::

    {"family": "refund-en-b", "problem_types": ["missing_knowledge"],
     "messages": [{"role": "user", "content": "Could I ask for my money back?"}]}

``family`` names the prompt family (all phrasings of one question that share an
answer); ``problem_types`` the types a reply to it can show or fix. The dataset
builder puts every pool sample of an evaluation family aside (never trained,
never held out) and copies the set into the dataset directory
(``evaluation.jsonl``), so the gate in the worker reads it from files alone. Its
``version`` is the sha256 of the file's bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trainer.exceptions import DatasetError
from trainer.records import ChatMessage

EVALUATION_FILE = "evaluation.jsonl"


class EvalPrompt(BaseModel):
    """One never-trained phrasing: its family, the types it tests, the context to answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str = Field(min_length=1, description="The prompt family (never trained).")
    problem_types: tuple[str, ...] = Field(
        default=(), description="Problem types a reply to this prompt can show."
    )
    messages: tuple[ChatMessage, ...] = Field(
        min_length=1, description="The conversation the model must answer (ends with a user turn)."
    )

    @property
    def prompt(self) -> str:
        """The first user message: what the family clustering compares."""
        return next((m.content for m in self.messages if m.role == "user"), "")


class EvaluationSet(BaseModel):
    """The prompts and the version (sha256 of the file) they were read from."""

    model_config = ConfigDict(frozen=True)

    version: str = ""
    prompts: tuple[EvalPrompt, ...] = ()

    @property
    def families(self) -> frozenset[str]:
        """Every family of the set."""
        return frozenset(p.family for p in self.prompts)


def encode_evaluation_set(prompts: Sequence[EvalPrompt]) -> bytes:
    """The byte-stable JSON lines of ``prompts`` (sorted keys, given order)."""
    return b"".join(
        orjson.dumps(p.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS) + b"\n"
        for p in prompts
    )


def parse_evaluation_set(data: bytes, *, source: str) -> EvaluationSet:
    """Parse the JSON lines; a bad line is an error naming the source and line number."""
    prompts = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            prompts.append(EvalPrompt.model_validate(orjson.loads(line)))
        except (orjson.JSONDecodeError, ValidationError) as error:
            msg = f"{source} line {number}: not an evaluation prompt ({error}); fix or remove it"
            raise DatasetError(msg) from error
    return EvaluationSet(version=hashlib.sha256(data).hexdigest(), prompts=tuple(prompts))


def read_evaluation_set(path: Path | None) -> EvaluationSet:
    """The set at ``path``; an empty set when ``path`` is None or the file is absent."""
    if path is None or not path.is_file():
        return EvaluationSet()
    return parse_evaluation_set(path.read_bytes(), source=str(path))


def write_evaluation_set(evaluation: EvaluationSet, out_dir: Path) -> Path:
    """Copy the set into a dataset directory as ``evaluation.jsonl``; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / EVALUATION_FILE
    path.write_bytes(encode_evaluation_set(evaluation.prompts))
    return path
