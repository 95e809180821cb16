"""The LM head's per-token log-probabilities on CPU with PyTorch's own log-softmax.

trl's fused LM head (`trl.kernels.ChunkedLogProbFunction`) runs a Triton kernel on GPUs and, elsewhere, a
torch re-statement of that kernel that walks each 32k-column logit tile about fifteen times (scaling by
1.0, masks built from aranges, a separate pass per statistic) and recomputes every tile in backward; this
module makes a lora-small step 1.19x faster on 2 CPU cores (bench/RESULTS.md). `CpuLogProbs.apply` takes the same arguments and returns the
same five outputs for the case SFTTrainer uses (log-probabilities with gradient; entropy and top-1 for its
metrics): one matmul and one fused log-softmax per block of rows. Blocks of more than one are
recomputed in backward (activation checkpointing), so memory stays bounded like trl's.
Anything else (GPUs, soft-capping, the other optional outputs) goes to trl's function unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# Rows per block: a block's fp32 log-softmax is rows x vocab x 4 bytes (~100 MB for a 49k vocabulary).
_BLOCK_ELEMENTS = 2**25
_SUPPORTED = {"entropy", "is_top1"}


def _block(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Target log-probabilities (with gradient), entropy and top-1 hits (without) of one block of rows."""
    logits = F.linear(hidden, weight, bias).float()  # bf16 matmul under autocast, softmax in fp32 like trl's
    if scale != 1.0:
        logits = logits * scale
    log_probs = logits.log_softmax(-1)
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        top1 = logits.argmax(-1) == targets  # argmax takes the first maximum, as trl's top-1 does
    return picked, entropy, top1


class CpuLogProbs:
    """Drop-in for trl's ChunkedLogProbFunction: lean on CPU, trl's own everywhere else."""

    original: Any = None

    @classmethod
    def apply(
        cls,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        temperature: float,
        chunk_size: int,
        final_logit_softcapping: float | None = None,
        logit_scale: float = 1.0,
        outputs: tuple[str, ...] = ("log_probs",),
    ) -> tuple[torch.Tensor, torch.Tensor | None, None, None, torch.Tensor | None]:
        """Per-token (log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1), as trl's function returns."""
        extra = set(outputs) - {"log_probs"}
        if hidden.device.type != "cpu" or final_logit_softcapping is not None or not extra <= _SUPPORTED:
            return cls.original.apply(
                hidden,
                weight,
                bias,
                targets,
                temperature,
                chunk_size,
                final_logit_softcapping,
                logit_scale,
                outputs,
            )
        scale = logit_scale / temperature
        rows = max(1, _BLOCK_ELEMENTS // weight.shape[0])
        blocks = [(h, t) for h, t in zip(hidden.split(rows), targets.split(rows), strict=True)] or [
            (hidden, targets)
        ]
        results = [
            _block(h, weight, bias, t, scale)
            if len(blocks) == 1
            else checkpoint(_block, h, weight, bias, t, scale, use_reentrant=False)
            for h, t in blocks
        ]
        picked, entropy, top1 = (torch.cat(parts) for parts in zip(*results, strict=True))
        return (
            picked,
            entropy if "entropy" in outputs else None,
            None,
            None,
            top1 if "is_top1" in outputs else None,
        )
