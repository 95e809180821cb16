"""The recipe's typed sections (model, adapter, data, hub here; train and eval in pipeline.config.training) and
the Recipe that holds them: frozen pydantic models, unknown keys rejected, strict types (pipeline.config.base)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, PrivateAttr, field_validator, model_validator

from pipeline.config.base import MAX_BATCH, MAX_COUNT, MAX_SEED, Spec, resolve_beside
from pipeline.config.stages import (
    STAGE_SECTIONS,
    DistillSpec,
    DPOSpec,
    GRPOSpec,
    KTOSpec,
    ORPOSpec,
    PairSpec,
    RewardModelSpec,
    RLOOSpec,
    SampledSpec,
    SimPOSpec,
    check_distill_lengths,
    check_stage_model,
    check_stage_sections,
)
from pipeline.config.templates import template_path
from pipeline.config.training import EvalSpec, TrainSpec

S = TypeVar("S", bound=Spec)


class ModelSpec(Spec):
    name: str = Field(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        description="Hub id or local folder of the base causal language model.",
    )
    revision: str | None = Field(
        None, description="Hub revision (branch, tag or commit) to pin the model to."
    )
    dtype: Literal["auto", "native", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weight dtype; auto = bfloat16 on a GPU that supports it, native = bfloat16 wherever bf16 "
        "is native (CPUs with AVX512-BF16/AMX too), else float32.",
    )
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="Load the base in 4-bit (QLoRA) or 8-bit through bitsandbytes."
    )
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type for QLoRA.")
    double_quant: bool = Field(
        True, description="Quantize the 4-bit quantization constants too (saves ~0.4 bit/param)."
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flash_attention_3"] | None = Field(
        "sdpa", description="Attention kernel; flash_attention_* needs a GPU and the flash-attn package."
    )
    trust_remote_code: bool = Field(
        False,
        description="Run modelling code from the model repository. Off unless you trust that repository.",
    )
    chat_template: str | None = Field(
        None,
        description="Chat template to use instead of the tokenizer's: a shipped one by name (chatml, gemma, "
        "llama3, mistral, phi3, qwen: recipes/templates/) or the path of a Jinja file.",
    )
    add_special_tokens: list[str] = Field(
        default_factory=list,
        description="Special tokens to add (e.g. '<tool_call>'); embeddings grow and only the new rows are trained.",
    )
    adapter: str | None = Field(
        None,
        description="Start from an existing LoRA adapter and train it further: a run folder (its adapter/), "
        "an adapter folder or a Hub id ORG/NAME@REV. Its LoRA settings replace the adapter section's; a "
        "preference stage also uses it as the reference. The manifest and model card record it as the parent.",
    )

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, value: str | None) -> str | None:
        if value is not None:
            template_path(value)  # an unknown name raises, listing the shipped ones
        return value


class AdapterSpec(Spec):
    method: Literal["lora", "full"] = Field(
        "lora", description="lora (also QLoRA/DoRA/rsLoRA) or full fine-tuning."
    )
    r: int = Field(16, gt=0, le=4096, description="LoRA rank.")
    alpha: int = Field(
        32,
        gt=0,
        le=MAX_BATCH,
        description="LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rsLoRA).",
    )
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input (each non-zero value costs a copy of it)."
    )
    target_modules: str | list[str] = Field(
        "all-linear", description="'all-linear' or a list of module names (q_proj, v_proj, ...)."
    )
    modules_to_save: list[str] = Field(
        default_factory=list, description="Modules trained in full and saved with the adapter (e.g. lm_head)."
    )
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    use_rslora: bool = Field(False, description="Rank-stabilised LoRA scaling alpha / sqrt(r).")
    init: Literal["default", "gaussian", "pissa", "loftq"] = Field(
        "default", description="Initialisation of the LoRA weights."
    )


class SourceSpec(Spec):
    path: str = Field(
        description="Local file, glob or folder (relative to the recipe file), or a Hub dataset id."
    )
    format: Literal[
        "auto",
        "messages",
        "sharegpt",
        "alpaca",
        "prompt_completion",
        "text",
        "preference",
        "unpaired",
        "prompts",
    ] = Field(
        "auto",
        description="Record format; auto detects it from the columns (preference: prompt/chosen/rejected; "
        "unpaired: prompt/completion/label; prompts: prompt and an optional answer, for GRPO).",
    )
    split: str = Field("train", description="Split to read from a Hub dataset or a dataset folder.")
    config: str | None = Field(None, description="Configuration (subset) name of a Hub dataset.")
    revision: str | None = Field(None, description="Hub revision of the data set.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Rename columns before format detection: {source_name: expected_name}.",
    )
    weight: float | None = Field(
        None, gt=0, le=1e6, description="Mixture weight relative to the other sources."
    )
    max_examples: int | None = Field(
        None, gt=0, le=MAX_COUNT, description="Use at most this many records of this source."
    )


def _as_sources(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, (str, dict)):
        value = [value]
    return [{"path": v} if isinstance(v, str) else v for v in value]


class DataSpec(Spec):
    train: list[SourceSpec] = Field(description="Training data: a path/Hub id, or a list of sources.")
    eval: list[SourceSpec] = Field(
        default_factory=list, description="Held-out data; when empty, eval_size records are split off train."
    )
    eval_size: float = Field(
        0.05,
        ge=0,
        le=MAX_COUNT,
        description="Records split off train for eval when no eval data is given: a fraction < 1 or a count.",
    )
    system_prompt: str | None = Field(
        None, description="System turn added to every conversation that has none."
    )
    on_invalid: Literal["error", "skip"] = Field(
        "error", description="Stop on a bad record, or skip and count it."
    )
    max_examples: int | None = Field(
        None, gt=0, le=MAX_COUNT, description="Use at most this many training records."
    )
    seed: int = Field(
        42, ge=0, le=MAX_SEED, description="Seed for shuffling, mixing and the train/eval split."
    )
    dedup: bool = Field(False, description="Remove exact and near-duplicate training examples.")
    redact: bool = Field(
        False, description="Replace e-mail addresses, phone numbers, cards and secrets with placeholders."
    )
    allow_contamination: bool = Field(
        False, description="Train even when eval examples also appear in train."
    )
    num_proc: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Worker processes that check and tokenize large data sets; absent = the usable CPU cores.",
    )
    streaming: bool = Field(
        False,
        description="Train from local JSONL/Parquet files read as a stream (data larger than memory): records are "
        "checked and tokenized on the fly in data.num_proc data-loader workers (default 1), each rank reading its "
        "own share; needs train.max_steps and, for held-out data, data.eval. Hygiene runs apart: `pipeline data "
        "hygiene`.",
    )

    _normalize_train = field_validator("train", "eval", mode="before")(_as_sources)

    @field_validator("train")
    @classmethod
    def _train_not_empty(cls, value: list[SourceSpec]) -> list[SourceSpec]:
        if not value:
            raise ValueError("must name at least one file or Hub data set")
        return value

    @field_validator("eval_size")
    @classmethod
    def _fraction_or_count(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError("must be a fraction below 1 (0.05) or a whole number of records (200)")
        return value

    _folder: Path | None = PrivateAttr(None)

    def resolve_path(self, relative: str) -> str:
        """Resolve a data path: as given if it exists, else relative to the recipe file's folder."""
        return resolve_beside(relative, self._folder)


class HubSpec(Spec):
    push: bool = Field(False, description="Push the adapter and model card at the end of finetune.")
    repo_id: str | None = Field(None, description="Target repository, ORG/NAME.")
    private: bool = Field(True, description="Create the repository as private.")
    revision: str | None = Field(None, description="Branch to push to.")

    @model_validator(mode="after")
    def _repo_when_pushing(self) -> HubSpec:
        if self.push and not self.repo_id:
            raise ValueError("push is true but repo_id is empty; set hub.repo_id: ORG/NAME")
        return self


class Recipe(Spec):
    description: str = Field("", description="One line shown by `pipeline recipes`.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="Base model.")
    adapter: AdapterSpec = Field(default_factory=AdapterSpec, description="Adapter (or full fine-tuning).")
    data: DataSpec = Field(description="Training and eval data.")
    train: TrainSpec = Field(default_factory=TrainSpec, description="Training loop.")
    eval: EvalSpec = Field(default_factory=EvalSpec, description="Evaluation after training.")
    hub: HubSpec = Field(default_factory=HubSpec, description="Pushing to the Hugging Face Hub.")
    dpo: DPOSpec | None = Field(
        None, description="DPO settings (train.stage: dpo); absent = the defaults below."
    )
    kto: KTOSpec | None = Field(
        None, description="KTO settings (train.stage: kto); absent = the defaults below."
    )
    grpo: GRPOSpec | None = Field(
        None, description="GRPO settings (train.stage: grpo); absent = the defaults below."
    )
    rloo: RLOOSpec | None = Field(
        None, description="RLOO settings (train.stage: rloo); absent = the defaults below."
    )
    orpo: ORPOSpec | None = Field(
        None, description="ORPO settings (train.stage: orpo); absent = the defaults below."
    )
    simpo: SimPOSpec | None = Field(
        None, description="SimPO settings (train.stage: simpo); absent = the defaults below."
    )
    reward: RewardModelSpec | None = Field(
        None, description="Reward-model settings (train.stage: reward); absent = the defaults below."
    )
    distill: DistillSpec | None = Field(
        None, description="Distillation settings (train.stage: distill); distill.teacher is required."
    )

    _name: str = PrivateAttr("recipe")
    _path: Path | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _eval_settings_need_held_out_data(self) -> Recipe:
        if self.data.eval or self.data.eval_size:
            return self
        fix = "set data.eval (a file) or data.eval_size (e.g. 0.05)"
        if self.train.eval_steps:
            raise ValueError(
                f"train.eval_steps is {self.train.eval_steps} but there is no held-out data; {fix}, "
                "or train.eval_steps: 0"
            )
        if self.eval.enabled and self.eval.fail_if_worse:
            raise ValueError(
                f"eval.fail_if_worse needs held-out data to compare on and there is none; {fix}, or "
                "eval.fail_if_worse: false"
            )
        return self

    @model_validator(mode="after")
    def _streaming_fits(self) -> Recipe:
        if not self.data.streaming:
            return self
        data, train = self.data, self.train
        problems = [
            (train.max_steps < 1, "train.max_steps: a stream has no length; set train.max_steps (e.g. 1000)"),
            (train.stage != "sft", f"train.stage {train.stage}: only sft streams; set data.streaming: false"),
            (
                data.dedup,
                "data.dedup is not applied to a stream; run `pipeline data hygiene` on the files first "
                "and set data.dedup: false",
            ),
            (
                data.redact,
                "data.redact is not applied to a stream; find personal data with `pipeline data "
                "hygiene`, redact the files, and set data.redact: false",
            ),
            (
                not data.eval and data.eval_size > 0,
                "data.eval_size: an eval split cannot be cut from a stream; "
                "give held-out files in data.eval, or set data.eval_size: 0",
            ),
            (
                any(s.weight for s in data.train),
                "data.train[].weight: a stream reads its files in turn, unmixed; drop the weights",
            ),
            (train.packing, "train.packing needs the whole data set; use train.padding_free: true"),
            (
                bool(data.max_examples) or any(s.max_examples for s in data.train),
                "max_examples: train.max_steps ends a stream; drop data.max_examples and "
                "data.train[].max_examples",
            ),
        ]
        for bad, message in problems:
            if bad:
                raise ValueError(f"data.streaming: {message}")
        return self

    @model_validator(mode="after")
    def _sections_fit_the_stage(self) -> Recipe:
        sections = {name: getattr(self, name) for name in STAGE_SECTIONS}
        check_stage_sections(self.train.stage, sections, self.train.model_fields_set, self.train.batch_size)
        check_stage_model(self.train.stage, self.adapter.method, bool(self.model.adapter))
        if self.train.stage == "distill" and self.distill is not None:
            check_distill_lengths(self.distill, self.train.max_length)
        sampled, stage = self.stage_settings, self.train.stage
        if isinstance(sampled, SampledSpec) and (self.train.batch_size * self.train.grad_accum) % (
            group := sampled.num_generations
        ):
            raise ValueError(
                f"train.batch_size x train.grad_accum ({self.train.batch_size} x {self.train.grad_accum}) must be "
                f"a multiple of {stage}.num_generations ({group}): each prompt's group of completions trains together"
            )
        return self

    @property
    def stage_settings(self) -> PairSpec | KTOSpec | SampledSpec | DistillSpec | None:
        """The settings of train.stage (its section or its defaults); None for sft."""
        spec = STAGE_SECTIONS.get(self.train.stage)
        return None if spec is None else self.settings_of(spec)  # type: ignore[return-value]

    def settings_of(self, spec: type[S]) -> S:
        """The section whose Spec is `spec` (recipe.settings_of(DPOSpec): the dpo section), or its defaults
        when the recipe has none."""
        name = next(name for name, kind in STAGE_SECTIONS.items() if kind is spec)
        return getattr(self, name) or spec()

    @model_validator(mode="after")
    def _check_method_fits_model(self) -> Recipe:
        if self.model.adapter and self.adapter.method == "full":
            raise ValueError(
                f"model.adapter ('{self.model.adapter}') continues a LoRA adapter, which full fine-tuning "
                "cannot; use adapter.method: lora or remove model.adapter"
            )
        if self.adapter.method == "full" and self.model.quantization != "none":
            raise ValueError(
                f"adapter.method full cannot train a {self.model.quantization}-quantized base; "
                "use adapter.method: lora (QLoRA) or model.quantization: none"
            )
        return self

    @property
    def name(self) -> str:
        """The recipe's name (the YAML file's stem)."""
        return self._name

    @property
    def path(self) -> Path | None:
        """The YAML file the recipe came from, if any."""
        return self._path

    def resolve_path(self, relative: str) -> str:
        """Resolve a path from the recipe: as given if it exists, else relative to the recipe file's folder."""
        return resolve_beside(relative, self._path.parent if self._path else None)

    def anchor(self, path: Path | None) -> None:
        """Record the file the recipe came from; its relative data paths resolve against that file's folder."""
        self._path = path
        self.data._folder = path.parent if path else None

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain data (what gets written to the run folder)."""
        return self.model_dump(mode="json")
