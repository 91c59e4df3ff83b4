"""Errors the trainer raises on purpose; each message says what to do next."""

from __future__ import annotations

from loraloop.exceptions import LoraloopError


class TrainerError(LoraloopError):
    """Root of every trainer error."""


class DatasetError(TrainerError):
    """The pool cannot make a governed dataset (e.g. no baseline samples at all)."""


class EmptyAssistantMaskError(TrainerError):
    """A sample has no assistant token left to train on; the message names the sample."""

    def __init__(self, message: str, *, sample_id: str) -> None:
        super().__init__(message)
        self.sample_id = sample_id


class ChatTemplateError(TrainerError):
    """The tokenizer's chat template does not render conversations prefix-consistently."""


class GenerationPromptError(ChatTemplateError):
    """The chat template has no generation marker: ``add_generation_prompt`` adds nothing,
    so a reply could not be prompted (the gate and serving generate from that prompt)."""


class BaseModelError(TrainerError):
    """The base model cannot be found, converted or loaded."""


class RegistryError(TrainerError):
    """The model registry is inconsistent or a version cannot be found or changed."""


class StatusTransitionError(RegistryError):
    """A version status change that the lifecycle does not allow."""


class TrainingFailedError(TrainerError):
    """A training run failed or was interrupted; nothing was registered."""

    def __init__(self, message: str, *, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode
