"""How fast a run trained: real tokens per second, the FLOPs they needed, and that rate's share of the
roofline (pipeline.train.roofline) — recorded in metrics.json (`train.throughput`) and the model card.

FLOPs count what the step must compute, per real (non-padding) token: each linear layer's forward (2 per
weight), the backward to its input (2 per weight) and, when the weight trains, its gradient (2 per weight);
LoRA's A and B count the same way. The LM head counts only on loss-carrying positions when
train.score_trained_only skips the rest. Causal attention adds 6 x query width x L^2 per example and layer
(forward QK^T and PV over L^2/2 pairs, backward twice that).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from pipeline.train.roofline import Gemm, roofline

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from pipeline.config.training import TrainSpec

log = logging.getLogger(__name__)
_SAMPLE = 5000  # examples read to estimate lengths (the first ones: data order is already shuffled)
_STREAM_SAMPLE = 256  # records of a stream read for the same estimate (tokenized on the fly: keep it short)


@dataclass(frozen=True)
class DataShape:
    """What a step processes: real tokens per device and step, the attention length E[L^2]/E[L], and the
    share of tokens that carry a loss."""

    tokens_per_step: float
    attention_length: float
    trained_share: float


def data_shape(dataset: Any, train: TrainSpec) -> DataShape | None:
    """Lengths (truncated to train.max_length) of the training set's first examples; None if unknown."""
    try:
        if isinstance(dataset, Sized):
            rows = dataset.select(range(min(len(dataset), _SAMPLE)))
            counts = list(zip(rows["num_tokens"], rows["num_trained"], strict=True))
        else:  # a stream (data.streaming): its first records, read once more
            counts = [
                (r["num_tokens"], r["num_trained"]) for r in itertools.islice(iter(dataset), _STREAM_SAMPLE)
            ]
        lengths = [min(int(n), train.max_length) for n, _ in counts]
        trained = [min(int(t), train.max_length) for _, t in counts]
    except (AttributeError, KeyError, TypeError, ValueError):  # pair-only data
        return None
    if not lengths or not sum(lengths):
        return None
    mean = sum(lengths) / len(lengths)
    return DataShape(
        tokens_per_step=train.batch_size * train.grad_accum * mean,
        attention_length=sum(n * n for n in lengths) / sum(lengths),
        trained_share=min(1.0, sum(trained) / sum(lengths)),
    )


def _linears(model: PreTrainedModel) -> list[tuple[int, int, bool, bool]]:
    """(in, out, trains, is_head) of every linear layer, LoRA's A and B included."""
    import torch

    head = model.get_output_embeddings()
    return [
        (m.in_features, m.out_features, bool(m.weight.requires_grad), m is head)
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    ]


def step_gemms(model: PreTrainedModel, shape: DataShape, head_share: float) -> list[Gemm]:
    """The multiplies of one step's linear layers: forward, input gradient, weight gradient when trained."""
    gemms = []
    for k, n, trains, is_head in _linears(model):
        m = max(1, round(shape.tokens_per_step * (head_share if is_head else 1.0)))
        gemms += [Gemm(m, k, n), Gemm(m, n, k)] + ([Gemm(k, m, n)] if trains else [])
    return gemms


def flops_per_token(model: PreTrainedModel, shape: DataShape, head_share: float) -> float:
    """FLOPs one real token costs in a training step (see the module docstring)."""
    linear = sum(
        (6 if trains else 4) * k * n * (head_share if is_head else 1.0)
        for k, n, trains, is_head in _linears(model)
    )
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = getattr(config, "num_hidden_layers", 0)
    heads = getattr(config, "num_attention_heads", 0)
    head_dim = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else 0)
    return linear + 6 * layers * heads * head_dim * shape.attention_length


def compute_dtype(model: PreTrainedModel, args: Any) -> torch.dtype:
    """The dtype the step's multiplies run in: autocast's, else the weights'."""
    import torch

    if getattr(args, "bf16", False):
        return torch.bfloat16
    if getattr(args, "fp16", False):
        return torch.float16
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


class ThroughputMeter(TrainerCallback):
    """Times each optimizer step and reads trl's token count from the logs; at the end, `summary` holds
    tokens/s and the roofline share, and rank 0 prints them."""

    def __init__(self, train: TrainSpec, dataset: Any) -> None:
        self.train = train
        self.shape = data_shape(dataset, train)
        self.step_seconds: list[float] = []
        self.tokens: tuple[int, int] | None = None  # (tokens so far, steps this meter saw by then)
        self.summary: dict[str, Any] = {}
        self._started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.step_seconds.append(time.perf_counter() - self._started)

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if logs and "num_tokens" in logs and self.step_seconds:
            self.tokens = (int(logs["num_tokens"]), len(self.step_seconds))

    def on_train_end(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        if self.tokens is None or not self.step_seconds or model is None:
            return
        try:
            self.summary = self._summarize(model, args)
        except (
            RuntimeError,
            ValueError,
            AttributeError,
            TypeError,
            OSError,
        ) as error:  # never fail a trained run
            log.warning("Throughput not recorded: %s", error)
            return
        if state.is_world_process_zero and "roofline_share" in self.summary:
            s = self.summary
            print(
                f"Training throughput: {s['tokens_per_second']:.1f} tokens/s, {s['achieved_gflops']:.0f} "
                f"GFLOP/s = {s['roofline_share']:.2f} of the roofline ({s['roofline']['gflops']:.0f} GFLOP/s, "
                f"{s['roofline']['source']})",
                flush=True,
            )

    def _summarize(self, model: PreTrainedModel, args: Any) -> dict[str, Any]:
        """tokens/s from steady-state steps (the first, warm-up step left out), FLOPs and the share."""
        tokens, steps = self.tokens  # type: ignore[misc]
        timed = self.step_seconds[1:] or self.step_seconds
        step_seconds = sum(timed) / len(timed)
        tokens_per_second = tokens / steps / step_seconds
        summary: dict[str, Any] = {
            "tokens_per_second": round(tokens_per_second, 1),
            "step_seconds": round(step_seconds, 4),
        }
        if self.shape is None:
            return summary
        head_share = self.shape.trained_share if self.train.score_trained_only else 1.0
        per_token = flops_per_token(model, self.shape, head_share)
        achieved = per_token * tokens_per_second
        device = "cuda" if next(model.parameters()).is_cuda else "cpu"
        world = max(1, int(getattr(args, "world_size", 1)))
        line = roofline(step_gemms(model, self.shape, head_share), compute_dtype(model, args), device)
        summary.update(
            flops_per_token=round(per_token),
            achieved_gflops=round(achieved / 1e9, 3),
            roofline=line.as_dict(),
            roofline_share=round(achieved / (line.flops_per_second * world), 3),
        )
        return summary
