"""The canary of the stages built on trl's experimental trainers (ORPO; SimPO through CPO).

trl.experimental may change in any release without deprecation, so every name and parameter the orpo and
simpo stages pass is listed here and checked before their config is built: `validate` and `finetune` then fail
in one line naming the installed trl instead of deep inside trl (tests/unit/train/patches/test_canaries.py).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from pipeline.train.patches.registry import library_version
from pipeline.train.stages.build import trl_class

LIBRARY = "trl"
# What build_trainer passes every stage's trainer (pipeline.train.stages.build and the stages' trainer_inputs).
TRAINER_INPUTS = (
    "model",
    "args",
    "processing_class",
    "peft_config",
    "callbacks",
    "train_dataset",
    "eval_dataset",
)
# The stage's trainer and config (module paths for build.trl_class) and the config fields its build passes.
API: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "orpo": (
        "trl.experimental.orpo:ORPOTrainer",
        "trl.experimental.orpo:ORPOConfig",
        ("max_length", "beta", "disable_dropout"),
    ),
    "simpo": (
        "trl.experimental.cpo:CPOTrainer",
        "trl.experimental.cpo:CPOConfig",
        ("max_length", "beta", "loss_type", "simpo_gamma", "cpo_alpha", "disable_dropout"),
    ),
}


def _missing(cls: Any, names: tuple[str, ...]) -> list[str]:
    parameters = inspect.signature(cls.__init__).parameters
    return [name for name in names if name not in parameters]


def canary(stages: tuple[str, ...] = tuple(API)) -> str | None:
    """None while trl still has the experimental classes and parameters these stages rely on; else what changed."""
    for name in stages:
        trainer, config, fields = API[name]
        for path, needed in ((trainer, TRAINER_INPUTS), (config, fields)):
            try:
                cls = trl_class(path)
            except (ImportError, AttributeError):
                return f"{path} is gone"
            missing = _missing(cls, needed)
            if missing:
                return f"{path} no longer takes {', '.join(missing)}"
    if "simpo" in stages:
        loss_type = {f.name: f for f in dataclasses.fields(trl_class(API["simpo"][1]))}["loss_type"]
        if "simpo" not in loss_type.metadata.get("choices", ()):
            return "CPOConfig.loss_type no longer offers simpo"
    return None


def experimental_config(stage: str) -> Any:
    """The trl config class of an experimental stage, once its canary passed; a one-line ValueError naming the
    installed trl otherwise (validate shows it as the recipe's error)."""
    problem = canary((stage,))
    if problem is not None:
        raise ValueError(
            f"train.stage {stage} uses trl.experimental, which {library_version(LIBRARY)} changed ({problem}); "
            "install trl 1.16 (pip install 'trl==1.16.*') or pick another train.stage"
        )
    return trl_class(API[stage][1])


# The columns trl's ORPO and CPO trainers read (pipeline.data.pairs.pair_dataset adds them).
PAIR_COLUMNS = ["prompt", "chosen", "rejected"]


def pairs_only(recipe: Any, model: Any, train: Any, eval_dataset: Any) -> dict[str, Any]:
    """Trainer inputs of the stages without a reference model (Stage.trainer_inputs of ORPO and SimPO): the
    data sets with only trl's prompt/chosen/rejected columns.

    Their collator passes any other column through as a list, and the pipeline's SFT view (input_ids) would
    then reach the FLOP count as the model's main input."""
    return {
        "train_dataset": train.select_columns(PAIR_COLUMNS),
        "eval_dataset": None if eval_dataset is None else eval_dataset.select_columns(PAIR_COLUMNS),
    }
