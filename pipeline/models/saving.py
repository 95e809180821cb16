"""Save a trained adapter (or full model) with its tokenizer into a run folder, atomically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.files import atomic_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


FULL_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def save_adapter(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    target: Path,
    save: Callable[[Path], None] | None = None,
) -> Path:
    """Save the adapter (or the full model for full fine-tuning) with tokenizer and chat template, atomically."""
    with atomic_dir(target) as tmp:
        if save is not None:
            save(tmp)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        # Trainer.save_model adds its arguments as a pickle; a shipped folder holds safetensors and JSON only.
        (tmp / "training_args.bin").unlink(missing_ok=True)
    return target
