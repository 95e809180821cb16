"""The stage registry: every train.stage has one record, and the pipeline reads stage facts only from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config.loader import load_recipe
from pipeline.config.stages import STAGES
from pipeline.train.stages.registry import all_stages, stage, stages_reading

CONFIGS = {"sft": "SFTConfig", "dpo": "DPOConfig", "kto": "KTOConfig", "grpo": "GRPOConfig"}
CONFIGS["rloo"] = "RLOOConfig"
# trl serves ORPO and SimPO (CPO's simpo loss) from trl.experimental (pipeline.train.stages.experimental).
CONFIGS |= {"orpo": "ORPOConfig", "simpo": "CPOConfig", "reward": "RewardConfig"}
CONFIGS["distill"] = "DistillationConfig"


def test_every_stage_the_schema_accepts_has_a_record_of_its_own() -> None:
    assert [record.name for record in all_stages()] == list(STAGES) == list(CONFIGS)
    for record in all_stages():
        assert record.trainer.rpartition(":")[2] == CONFIGS[record.name].replace("Config", "Trainer")
        assert record.rows_per_example in (1, 2) and record.card
    assert stages_reading("pairs") == ["dpo", "orpo", "simpo", "reward"]
    assert [record.name for record in all_stages() if record.head == "score"] == ["reward"]
    assert stages_reading("prompts") == ["grpo", "rloo"]
    assert stages_reading("conversations") == ["sft", "distill"]
    with pytest.raises(KeyError, match=f"no training stage 'ppo'; known: {', '.join(STAGES)}\"$"):
        stage("ppo")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_each_stage_builds_its_trl_config_and_a_trainer_with_the_shared_mixin(
    name: str, make_recipe: Any, tmp_path: Path
) -> None:
    from pipeline.train.stages.build import build_stage_config, trainer_class
    from pipeline.train.stages.mixin import PipelineTrainer

    sections: dict[str, Any] = {"train": {"stage": name, "batch_size": 2}}
    if name == "sft":
        sections["train"]["group_by_length"] = True
    if name in ("grpo", "rloo"):
        sections[name] = {"num_generations": 2, "rewards": [{"function": "exact_match"}]}
    if name == "distill":  # the config names no teacher: the trainer gets it loaded (stages/distill.py)
        sections[name] = {"teacher": "some-run", "beta": 0.5, "temperature": 0.7, "max_completion_length": 16}
    recipe = load_recipe(str(make_recipe(**sections)), ["train.report_to=[none]"])
    config = build_stage_config(recipe, tmp_path, dry_run=True)
    assert type(config).__name__ == CONFIGS[name]
    if name == "distill":
        assert (config.beta, config.temperature, config.teacher_model_name_or_path) == (0.5, 0.7, None)
    assert config.output_dir == str(tmp_path / "checkpoints")
    cls = trainer_class(stage(name), recipe)
    assert issubclass(cls, PipelineTrainer)
    trl_base = [base.__name__ for base in cls.__mro__ if base.__module__.startswith("trl.")]
    assert trl_base[0] == stage(name).trainer.rpartition(":")[2]
    mixins = [base.__name__ for base in cls.__mro__[1:] if base.__module__.startswith("pipeline.")]
    expected = ["PipelineTrainer", "CachedFlopCount"]
    assert mixins[:2] == expected and (("ShuffledLengthGroups" in mixins) is (name == "sft"))
    callbacks = [type(callback).__name__ for callback in stage(name).callbacks(recipe)]
    assert callbacks == (["RewardSpreadWarning"] if name in ("grpo", "rloo") else [])


def test_the_memory_plan_and_the_card_read_the_stage_record(make_recipe: Any) -> None:
    from pipeline.hub.card import build_model_card
    from pipeline.planning.memory import estimate, model_shape

    for name, rows in (("sft", 1), ("dpo", 2), ("kto", 2), ("orpo", 2), ("simpo", 2)):
        train = {"stage": name, "batch_size": 2}
        recipe = load_recipe(str(make_recipe(train=train)), [])
        plan = estimate(recipe, model_shape(recipe), device="cpu")
        activations = {row[0]: row[2] for row in plan.rows}["activations"]
        assert (f"x {rows} ({name} rows)" in activations) is (rows > 1)
        card = str(build_model_card(recipe, {"recipe": recipe.name}))
        assert f"trained with {stage(name).card} by" in card


def test_full_fine_tuning_plans_a_reference_copy_only_for_stages_with_a_reference(make_recipe: Any) -> None:
    from pipeline.planning.memory import estimate, model_shape

    for name in ("dpo", "orpo", "simpo"):
        sections = {"train": {"stage": name, "batch_size": 2}, "adapter": {"method": "full"}}
        recipe = load_recipe(str(make_recipe(**sections)), [])
        rows = [row[0] for row in estimate(recipe, model_shape(recipe), device="cpu").rows]
        assert ("reference model" in rows) is (name == "dpo"), name
