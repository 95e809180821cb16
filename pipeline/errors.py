"""Errors the CLI reports as one line and a non-zero exit, never as a traceback."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: the message is a complete, one-line explanation that names the fix."""

    exit_code = 1


class RecipeError(PipelineError):
    """A recipe file or override is invalid (names the file and field)."""

    exit_code = 2


class DataError(PipelineError):
    """A data file or record is invalid (names the file and line)."""

    exit_code = 3


class AssetError(PipelineError):
    """A model, tokenizer or adapter cannot be found or loaded."""

    exit_code = 4


class TrainingError(PipelineError):
    """Training stopped (non-finite loss, interrupted, out of memory)."""

    exit_code = 5


class EvaluationGateError(PipelineError):
    """The adapted model is worse than the base beyond the recipe's tolerance."""

    exit_code = 6


class HubError(PipelineError):
    """A push to or a download from the Hugging Face Hub failed."""

    exit_code = 7
