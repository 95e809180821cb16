"""Distillation (train.stage: distill) over trl's DistillationTrainer: a student (LoRA on model.name) learns a
teacher's next-token distribution.

trl 1.16 trains on-policy only: every step the student samples an answer to each prompt of the batch and the
loss is the generalized Jensen-Shannon divergence (distill.beta: forward KL, JSD, reverse KL) between the
student's and the teacher's distributions at each sampled token. The prompts are the data's conversations up
to their last answer (pipeline.data.pairs.conversation_prompt); the answers themselves serve the evaluation
only (the language metrics and the teacher-student divergence, pipeline.evaluation.distillation). The teacher
is found and checked before weights load (pipeline.train.teacher) and loaded once, frozen.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.config.stages import DistillSpec
from pipeline.train.arguments import training_arguments
from pipeline.train.stages.registry import Stage

if TYPE_CHECKING:
    from datasets import Dataset
    from trl import DistillationConfig

# The data set column trl's DistillationTrainer reads (pipeline.data.pairs.pair_dataset adds it).
COLUMNS = ["prompt"]


def build_distill_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> DistillationConfig:
    """The trl DistillationConfig for a recipe (train.stage: distill); checkpoints and logs go under run_dir."""
    from trl import DistillationConfig

    distill = recipe.settings_of(DistillSpec)
    return DistillationConfig(
        **training_arguments(recipe, run_dir, dry_run),
        beta=distill.beta,
        temperature=distill.temperature,
        max_completion_length=distill.max_completion_length,
        # The student's dropout would make its sampled answers and its scored distribution two networks.
        disable_dropout=True,
    )


def _inputs(recipe: Recipe, model: Any, train: Dataset, eval_dataset: Dataset | None) -> dict[str, Any]:
    """The teacher (loaded frozen) and the prompt column of the data sets."""
    from pipeline.train.teacher import load_teacher, resolve_teacher

    return {
        "teacher_model": load_teacher(recipe, resolve_teacher(recipe)),
        "train_dataset": train.select_columns(COLUMNS),
        "eval_dataset": None if eval_dataset is None else eval_dataset.select_columns(COLUMNS),
    }


STAGE = Stage(
    name="distill",
    trainer="DistillationTrainer",
    data="conversations",
    rows_per_example=1,
    evaluation="distillation",
    card="on-policy distillation from a teacher model",
    build_config=build_distill_config,
    trainer_inputs=_inputs,
    padded=lambda recipe: "trl's distillation batches pad prompts and completions",
    # trl samples the student's answers outside autocast, as GRPO's (Stage.forwards_under_autocast).
    forwards_under_autocast=False,
    # trl's own chunked divergence kernel projects the hidden states, not its fused LM head.
    fused_lm_head=False,
    teacher=True,
)
