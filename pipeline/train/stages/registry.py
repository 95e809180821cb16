"""The stage registry: one `Stage` record per training stage (train.stage), each defined in its own module here.

A stage module (sft.py, dpo.py, ...) defines `STAGE = Stage(...)`; `stage(name)` imports it on first use, so
trl and the stage's own imports load only for the stage a run trains. Everything that differs between stages
is on the record: the trl config it builds, the trl trainer and the inputs it takes, the data kind it reads,
rows per example for the memory plan, what evaluation adds, how the model card words it, and which shared
speed levers apply. Adding a stage: ARCHITECTURE.md, "Adding a training stage".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipeline.config.stages import STAGES

if TYPE_CHECKING:
    from datasets import Dataset

    from pipeline.config.schema import Recipe

# What a stage's evaluation adds to the language metrics every run gets (pipeline.evaluation.runner):
# held-out preference pairs, labelled completions, the recipe's rewards of the greedy answers, or the
# teacher-student divergence on the eval answers (distillation); a reward model's held-out pairs scored by
# its head instead of the language metrics (scores).
Evaluation = Literal["language", "pairs", "labelled", "rewards", "scores", "distillation"]
# What the stage trains: the causal LM, or a one-output score head on its backbone (a reward model).
Head = Literal["causal_lm", "score"]


def _no_mixins(recipe: Recipe) -> tuple[type, ...]:
    return ()


def _no_callbacks(recipe: Recipe) -> list[Any]:
    return []


@dataclass(frozen=True)
class Stage:
    """Everything the pipeline needs to know about one training stage."""

    name: str  # the value of train.stage; its settings section in the recipe has the same name (if any)
    # the trl trainer class, by name, or by module path for trl's experimental ones
    # ("trl.experimental.orpo:ORPOTrainer"); imported when a trainer is built (build.trl_class)
    trainer: str
    data: str  # the record kind it trains on (pipeline.data.pairs.KINDS)
    rows_per_example: int  # rows one example puts in a micro-batch (memory plan: DPO's chosen + rejected = 2)
    evaluation: Evaluation
    card: str  # "trained with {card}" in the model card
    # (recipe, run_dir, dry_run) -> the trl config; dry_run: `validate` builds it, reporting to no tracker.
    build_config: Callable[[Recipe, Path, bool], Any]
    # (recipe, model, train, eval) -> the trainer's stage-specific keyword arguments (reference model,
    # reward functions, the data set columns it reads).
    trainer_inputs: Callable[[Recipe, Any, Dataset, Dataset | None], dict[str, Any]]
    # Why the batches are not padding-free rows (so per-example packed attention cannot apply), or "" when
    # they are (SFT with train.padding_free or packing).
    padded: Callable[[Recipe], str]
    # Extra trainer mixins the recipe asks for (SFT's shuffled length groups).
    mixins: Callable[[Recipe], tuple[type, ...]] = field(default=_no_mixins)
    # Trainer callbacks of the stage for this recipe (GRPO and RLOO: the flat-reward warning, train.reward_spread).
    callbacks: Callable[[Recipe], list[Any]] = field(default=_no_callbacks)
    # Uses a reference model that full fine-tuning loads as a second copy unless reference log-probs are
    # precomputed (memory plan).
    reference: bool = False
    # Every forward of training runs under mixed precision's autocast, so peft's casts of adapter inputs can
    # be skipped (GRPO: trl generates its completions outside autocast, where they are needed).
    forwards_under_autocast: bool = True
    # trl's trainer scores through its fused LM head (trl.trainer.utils.add_fused_lm_head), which
    # train.score_trained_only makes compact on CPU; trl's experimental ORPO and CPO compute full logits.
    fused_lm_head: bool = True
    # The model the stage trains (pipeline.models.heads.to_reward_model for "score").
    head: Head = "causal_lm"
    # Loads a frozen teacher model beside the student (distillation): its weights count in the memory plan.
    teacher: bool = False


def stage(name: str) -> Stage:
    """The registered stage of train.stage `name`."""
    if name not in STAGES:
        raise KeyError(f"no training stage '{name}'; known: {', '.join(STAGES)}")
    record = importlib.import_module(f"pipeline.train.stages.{name}").STAGE
    if not isinstance(record, Stage) or record.name != name:
        raise TypeError(f"pipeline.train.stages.{name}.STAGE is not the Stage record of '{name}'")
    return record


def all_stages() -> list[Stage]:
    """Every registered stage, in the order config.stages.STAGES lists them."""
    return [stage(name) for name in STAGES]


def stages_reading(kind: str) -> list[str]:
    """Names of the stages that train on records of this kind (for error messages that suggest one)."""
    return [record.name for record in all_stages() if record.data == kind]


def check_records(name: str, records: list[dict[str, Any]]) -> None:
    """Every record is of the kind stage `name` trains on; a DataError naming the first that is not and the
    stages that would train on it."""
    from pipeline.data.pairs import KINDS, check_stage_records

    by_kind = {kind: stages_reading(kind) for kind in KINDS}
    check_stage_records(name, stage(name).data, records, by_kind)
