"""Settings of the training stages after SFT (train.stage): a typed section per stage, checked against the stage.

A recipe names its stage in train.stage; the section of another stage, or an SFT-only train key in a
preference recipe, is an error at load time, so `validate` rejects it before any data or weight loads.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from pipeline.config.base import MAX_TOKENS, Spec

# The names train.stage accepts; each has its module in pipeline.train.stages (the stage registry), and a test
# checks that the two agree.
StageName = Literal["sft", "dpo", "kto", "grpo", "rloo", "orpo", "simpo", "reward", "distill"]
STAGES: tuple[str, ...] = get_args(StageName)
# Loss types of trl 1.x's DPOTrainer (DPOConfig.loss_type); several combine with dpo.loss_weights.
DPOLoss = Literal[
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
]
DPO_LOSSES: tuple[str, ...] = get_args(DPOLoss)
# train keys that only the SFT stage reads: set in a preference recipe they would silently do nothing.
SFT_ONLY = ("loss_on", "packing", "group_by_length")


class PairSpec(Spec):
    """Settings shared by the stages that train on preference pairs (DPO, ORPO, SimPO)."""

    max_prompt_length: int | None = Field(
        None,
        gt=0,
        le=MAX_TOKENS,
        description="Pairs whose prompt (as the chat template renders it) is longer than this many tokens are "
        "dropped and counted; None = up to train.max_length (a prompt that fills it leaves nothing to compare).",
    )


class DPOSpec(PairSpec):
    beta: float = Field(
        0.1,
        gt=0,
        le=100,
        description="How far the policy may move from the reference: higher keeps it closer (IPO: the τ).",
    )
    loss_type: list[DPOLoss] = Field(
        default_factory=lambda: ["sigmoid"],
        description="trl's DPO loss, or several combined with loss_weights: " + ", ".join(DPO_LOSSES) + ".",
    )
    loss_weights: list[float] | None = Field(
        None, description="One weight per loss_type when several are combined; None = equal weights."
    )
    label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="Probability that a pair's preference is flipped (robust DPO) or EXO's ε (exo_pair needs > 0).",
    )
    precompute_ref_log_probs: bool = Field(
        False,
        description="Score every pair with the reference once before training instead of every step: saves the "
        "reference forward per step (and, for full fine-tuning, the reference copy in memory).",
    )

    @field_validator("loss_type", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _weights_match_losses(self) -> DPOSpec:
        if not self.loss_type:
            raise ValueError("loss_type must name at least one loss (e.g. sigmoid)")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"loss_weights has {len(self.loss_weights)} value(s) for {len(self.loss_type)} loss_type(s); "
                "give one weight per loss"
            )
        if "exo_pair" in self.loss_type and self.label_smoothing == 0:
            raise ValueError("loss_type exo_pair needs label_smoothing > 0 (the EXO paper uses 0.001)")
        return self


class ORPOSpec(PairSpec):
    beta: float = Field(
        0.1,
        gt=0,
        le=100,
        description="ORPO's λ: weight of the odds-ratio term beside the chosen answers' language-model loss.",
    )


class SimPOSpec(PairSpec):
    beta: float = Field(
        2.0,
        gt=0,
        le=100,
        description="Scale of the length-normalised log-probability margin (the SimPO paper uses 2 to 2.5).",
    )
    simpo_gamma: float = Field(
        0.5,
        ge=0,
        le=100,
        description="Target margin γ the chosen answer's reward should exceed the rejected one's by.",
    )


class RewardModelSpec(PairSpec):
    """Reward modelling: a score head on the base learns to rank each pair's chosen answer above the rejected."""

    center_rewards_coefficient: float | None = Field(
        None,
        ge=0,
        le=100,
        description="Weight of a penalty on the squared scores that keeps them centred on 0 (0.01 is usual); "
        "None = no penalty.",
    )


class KTOSpec(Spec):
    beta: float = Field(
        0.1,
        gt=0,
        le=100,
        description="How far the policy may move from the reference: higher keeps it closer.",
    )
    loss_type: Literal["kto", "apo_zero_unpaired"] = Field("kto", description="trl's KTO loss.")
    desirable_weight: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Weight of the losses of desirable (label: true) completions; raise it when they are rarer.",
    )
    undesirable_weight: float = Field(
        1.0, gt=0, le=100, description="Weight of the losses of undesirable (label: false) completions."
    )
    max_prompt_length: int | None = Field(
        None,
        gt=0,
        le=MAX_TOKENS,
        description="Records whose prompt is longer than this many tokens are dropped and counted; None = up to "
        "train.max_length.",
    )
    precompute_ref_log_probs: bool = Field(
        False, description="Score every record with the reference once before training instead of every step."
    )


BUILTIN_REWARDS = ("exact_match", "regex", "length", "similarity")


class RewardSpec(Spec):
    function: str | None = Field(
        None,
        description="A built-in reward (exact_match: the answer column, normalised; regex: matches `pattern`; "
        "length: closeness to `target_chars`; similarity: cosine to the answer under eval.embedding_model) or "
        "your own as FILE.py:NAME (beside the recipe), called as trl calls reward functions. Give function "
        "or model.",
    )
    model: str | None = Field(
        None,
        description="A reward model that scores each prompt and completion: a run folder of train.stage: "
        "reward (runs/reward-small-<time>) or its merged folder. Give function or model.",
    )
    weight: float = Field(1.0, ge=-100, le=100, description="Weight of this reward in the sum.")
    pattern: str | None = Field(None, description="The regular expression of the regex reward.")
    target_chars: int | None = Field(None, gt=0, le=1 << 20, description="The length reward's ideal length.")

    @model_validator(mode="after")
    def _known_and_complete(self) -> RewardSpec:
        if (self.function is None) == (self.model is None):
            raise ValueError(
                "give either function (a reward function) or model (a reward model run), not both"
            )
        if self.model is not None:
            if self.pattern is not None or self.target_chars is not None:
                raise ValueError("pattern and target_chars go with a function, not with model")
            return self
        name = self.function
        if name not in BUILTIN_REWARDS and not re.fullmatch(r"[^:]+\.py:[A-Za-z_]\w*", name):
            raise ValueError(
                f"function '{name}' is neither a built-in ({', '.join(BUILTIN_REWARDS)}) nor FILE.py:NAME"
            )
        if (name == "regex") != (self.pattern is not None):
            raise ValueError("pattern goes with function: regex, and regex needs a pattern")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a regular expression ({exc})") from None
        if (name == "length") != (self.target_chars is not None):
            raise ValueError("target_chars goes with function: length, and length needs target_chars")
        return self


# Loss types and importance-sampling levels of trl 1.x's GRPOTrainer (GRPOConfig.loss_type and
# .importance_sampling_level); a test checks them against what the installed trl documents.
GRPOLoss = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]
GRPO_LOSSES: tuple[str, ...] = get_args(GRPOLoss)
ImportanceSamplingLevel = Literal["token", "sequence"]
IMPORTANCE_SAMPLING_LEVELS: tuple[str, ...] = get_args(ImportanceSamplingLevel)


class SampledSpec(Spec):
    """Settings shared by the stages that sample answers to prompts and score them with rewards (GRPO, RLOO)."""

    num_generations: int = Field(4, ge=2, le=1024, description="Completions sampled per prompt (the group).")
    max_completion_length: int = Field(
        64, gt=0, le=MAX_TOKENS, description="Tokens generated per completion."
    )
    temperature: float = Field(1.0, gt=0, le=10, description="Sampling temperature of the generations.")
    beta: float = Field(
        0.0,
        ge=0,
        le=100,
        description="KL coefficient against the reference; 0 = no reference forward at all.",
    )
    rewards: list[RewardSpec] = Field(
        default_factory=lambda: [{"function": "exact_match"}],
        validate_default=True,
        description="Reward functions, summed with their weights.",
    )
    max_prompt_length: int | None = Field(
        None, gt=0, le=MAX_TOKENS, description="Prompts longer than this many tokens are dropped and counted."
    )
    merged_rollouts: bool = Field(
        True,
        description="Sample the completions with the LoRA adapter folded into the weights (decoding at the "
        "base's speed; the exact weights come back after); false decodes through the unmerged adapter.",
    )

    @field_validator("rewards")
    @classmethod
    def _some_reward(cls, value: list[RewardSpec]) -> list[RewardSpec]:
        if not value:
            raise ValueError("must name at least one reward function (e.g. {function: exact_match})")
        return value


class GRPOSpec(SampledSpec):
    loss_type: GRPOLoss = Field(
        "dapo", description="trl's GRPO loss aggregation: " + ", ".join(GRPO_LOSSES) + "."
    )
    importance_sampling_level: ImportanceSamplingLevel = Field(
        "token",
        description="Importance ratios per token, or one per sequence (sequence with loss_type grpo: GSPO).",
    )

    @model_validator(mode="after")
    def _level_fits_loss(self) -> GRPOSpec:
        # trl documents luspo as a sequence-level loss and vespo as computing its own sequence weights.
        if self.loss_type == "luspo" and self.importance_sampling_level != "sequence":
            raise ValueError("loss_type luspo needs importance_sampling_level: sequence")
        if self.loss_type == "vespo" and self.importance_sampling_level != "token":
            raise ValueError(
                "loss_type vespo weighs whole sequences itself; set importance_sampling_level: token"
            )
        return self


class RLOOSpec(SampledSpec):
    """RLOO: each completion's baseline is the mean reward of the other completions of its prompt."""


# distill.teacher of this form names the newest finished run of a recipe under train.output_dir.
LATEST_RUN = "latest:"


class DistillSpec(Spec):
    """Distillation: the student (LoRA on model.name) samples answers to the data's prompts and learns the
    teacher's next-token distribution on them (trl's DistillationTrainer, on-policy)."""

    teacher: str | None = Field(
        None,
        description="The model to learn from, sharing the student's tokenizer: a run folder (its adapter on its "
        "base, or its full model), a merged or plain model folder, a Hub id (offline: the local cache), or "
        f"{LATEST_RUN}RECIPE for that recipe's newest finished run under train.output_dir (e.g. "
        f"{LATEST_RUN}lora-small).",
    )
    beta: float = Field(
        1.0,
        ge=0,
        le=1,
        description="trl's generalized Jensen-Shannon divergence: 0 = forward KL(teacher||student), 1 = reverse "
        "KL(student||teacher) (mode-seeking), 0.5 = JSD.",
    )
    temperature: float = Field(
        1.0,
        gt=0,
        le=10,
        description="Softmax temperature of the student's sampling and of both distributions in the loss.",
    )
    max_completion_length: int = Field(
        64, gt=0, le=MAX_TOKENS, description="Tokens the student generates per prompt (what the loss scores)."
    )
    max_prompt_length: int | None = Field(
        None,
        gt=0,
        le=MAX_TOKENS,
        description="Prompts longer than this many tokens are dropped and counted; None = up to train.max_length "
        "minus max_completion_length.",
    )

    @field_validator("teacher")
    @classmethod
    def _names_something(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().removeprefix(LATEST_RUN).strip():
            raise ValueError(
                f"teacher '{value}' names nothing; give a run folder, a model folder or id, or {LATEST_RUN}RECIPE"
            )
        return value


# The recipe section of each stage that has settings (same name as the stage) and its Spec; SFT has none.
STAGE_SECTIONS: dict[str, type[Spec]] = {
    "dpo": DPOSpec,
    "orpo": ORPOSpec,
    "simpo": SimPOSpec,
    "kto": KTOSpec,
    "grpo": GRPOSpec,
    "rloo": RLOOSpec,
    "reward": RewardModelSpec,
    "distill": DistillSpec,
}


def check_stage_sections(
    stage: str, sections: dict[str, Any | None], train_set: set[str], batch_size: int
) -> None:
    """Raise ValueError when a section of another stage is set, an SFT-only train key in a later stage, or a
    setting the stage cannot train with.

    sections: stage name -> that stage's section as the recipe gave it (None when absent); train_set: the
    train keys the recipe set explicitly; batch_size: train.batch_size."""
    if stage == "kto" and batch_size < 2:
        raise ValueError(
            "train.stage kto estimates its KL term from the other completions of a micro-batch, so "
            f"train.batch_size must be at least 2 (got {batch_size})"
        )
    if stage == "distill" and getattr(sections.get("distill"), "teacher", None) is None:
        raise ValueError(
            "train.stage distill needs distill.teacher: a run folder, a model folder or id, or "
            f"{LATEST_RUN}RECIPE (e.g. distill: {{teacher: {LATEST_RUN}lora-small}})"
        )
    for name, section in sections.items():
        if section is not None and name != stage:
            raise ValueError(
                f"the {name} section applies to train.stage: {name}, but train.stage is {stage}; set "
                f"train.stage: {name} or remove the {name} section"
            )
    if stage != "sft":
        for key in SFT_ONLY:
            if key in train_set:
                raise ValueError(
                    f"train.{key} applies to train.stage: sft only (the {stage} trainer scores whole "
                    f"completions); remove train.{key}"
                )


def check_stage_model(stage: str, method: str, continues_adapter: bool) -> None:
    """Raise ValueError when the stage cannot train this kind of model (adapter.method, model.adapter)."""
    if stage == "reward" and (method == "full" or continues_adapter):
        raise ValueError(
            "train.stage reward trains a new LoRA adapter with its score head on the base; use "
            "adapter.method: lora (or dora) and no model.adapter"
        )


def check_distill_lengths(distill: DistillSpec, max_length: int) -> None:
    """Raise ValueError when distill's prompt and completion lengths leave no room in train.max_length."""
    completion, prompt = distill.max_completion_length, distill.max_prompt_length
    if (prompt or 1) + completion > max_length:
        what = f" + max_prompt_length ({prompt})" if prompt else ""
        raise ValueError(
            f"distill.max_completion_length ({completion}){what} leaves no room in train.max_length "
            f"({max_length}) for the prompt and the answer; lower it or raise train.max_length"
        )
