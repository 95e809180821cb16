"""The mixin every stage's trainer carries: the shared speed levers, applied only while it trains.

Each lever is a context that puts the library (or the model) back as it was when training ends, so a process
that trains two recipes one after the other trains the second exactly as a fresh process would, and
evaluation after training sees the model as it was loaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.train.flop_count import CachedFlopCount
from pipeline.train.patches.registry import record


@dataclass(frozen=True)
class Levers:
    """The shared speed levers one trainer trains with (from the recipe and its stage)."""

    padded: str  # why batches are padded (no per-example attention); "" for padding-free rows
    score_trained_only: bool  # train.score_trained_only: trl's fused LM head skips loss-free positions
    keep_freed_memory: bool  # train.keep_freed_memory (CPU only)
    autocast_forwards: bool = True  # every forward runs under autocast (Stage.forwards_under_autocast)


@contextlib.contextmanager
def training_levers(model: Any, args: Any, levers: Levers) -> Iterator[None]:
    """While a trainer trains: per-example attention on padding-free rows, the compact fused LM head, freed
    memory kept (CPU), no peft input casts under mixed precision, LoRA updates in one multiply (CPU).

    Everything is restored when the block ends; pipeline.train.patches.registry records what was on."""
    from peft.helpers import disable_input_dtype_casting

    from pipeline.train.allocator import keeping_freed_memory
    from pipeline.train.attention import packed_attention
    from pipeline.train.patches.peft_lora import lora_updates_in_one_multiply
    from pipeline.train.patches.trl_lm_head import trained_positions_only

    cpu = args.device.type == "cpu"
    # Mixed precision runs every forward under autocast, which casts each LoRA input to bf16 for its matmul
    # anyway; peft's own cast to the fp32 adapter dtype first only adds two copies of every linear layer's
    # input, one kept for backward (bench/RESULTS.md: 1.10x per step, less memory).
    mixed = bool(args.bf16 or args.fp16)
    skip_casts = mixed and levers.autocast_forwards and hasattr(model, "peft_config")
    with (
        packed_attention(model, active=not levers.padded) as packed,
        trained_positions_only(levers.score_trained_only),
        keeping_freed_memory(levers.keep_freed_memory and cpu),
        disable_input_dtype_casting(model, active=skip_casts),
        lora_updates_in_one_multiply(model, active=cpu),
    ):
        record("packed_sdpa", packed, levers.padded or "the model does not use SDPA")
        why = "no autocast" if not mixed else "forwards outside autocast (generation)"
        record("skip_peft_input_casts", skip_casts, "" if skip_casts else why)
        yield


class PipelineTrainer(CachedFlopCount):
    """Trainer mixin of every stage: trains under `training_levers`, and drops trl's frozen reference copy of
    a continued adapter afterwards, so only the trained adapter is saved and evaluated."""

    model: Any
    args: Any
    levers: Levers = Levers(padded="", score_trained_only=True, keep_freed_memory=True)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """transformers' Trainer.train under this trainer's speed levers."""
        from pipeline.train.stages.reference import drop_reference_adapter

        with training_levers(self.model, self.args, self.levers):
            output = super().train(*args, **kwargs)  # type: ignore[misc]
        drop_reference_adapter(self.model)
        return output
