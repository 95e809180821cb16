"""The recipe's typed sections (model, adapter, data, train, eval, hub): frozen pydantic models, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from pipeline.config.templates import template_path


def resolve_beside(relative: str, folder: Path | None) -> str:
    """A path as given if it exists (or is absolute), else relative to `folder` (a recipe file's folder)."""
    if Path(relative).is_absolute() or folder is None or Path(relative).exists():
        return relative
    candidate = folder / relative
    return str(candidate) if candidate.exists() or any(ch in relative for ch in "*?[") else relative


class Spec(BaseModel):
    """Base for every recipe section: frozen, and unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


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
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: int = Field(
        32, gt=0, description="LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rsLoRA)."
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
    format: Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text"] = Field(
        "auto", description="Record format; auto detects it from the columns."
    )
    split: str = Field("train", description="Split to read from a Hub dataset or a dataset folder.")
    config: str | None = Field(None, description="Configuration (subset) name of a Hub dataset.")
    revision: str | None = Field(None, description="Hub revision of the data set.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Rename columns before format detection: {source_name: expected_name}.",
    )
    weight: float | None = Field(None, gt=0, description="Mixture weight relative to the other sources.")
    max_examples: int | None = Field(None, gt=0, description="Use at most this many records of this source.")


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
        description="Records split off train for eval when no eval data is given: a fraction < 1 or a count.",
    )
    system_prompt: str | None = Field(
        None, description="System turn added to every conversation that has none."
    )
    on_invalid: Literal["error", "skip"] = Field(
        "error", description="Stop on a bad record, or skip and count it."
    )
    max_examples: int | None = Field(None, gt=0, description="Use at most this many training records.")
    seed: int = Field(42, description="Seed for shuffling, mixing and the train/eval split.")
    dedup: bool = Field(False, description="Remove exact and near-duplicate training examples.")
    redact: bool = Field(
        False, description="Replace e-mail addresses, phone numbers, cards and secrets with placeholders."
    )
    allow_contamination: bool = Field(
        False, description="Train even when eval examples also appear in train."
    )

    _normalize_train = field_validator("train", "eval", mode="before")(_as_sources)

    @field_validator("train")
    @classmethod
    def _train_not_empty(cls, value: list[SourceSpec]) -> list[SourceSpec]:
        if not value:
            raise ValueError("must name at least one file or Hub data set")
        return value

    _folder: Path | None = PrivateAttr(None)

    def resolve_path(self, relative: str) -> str:
        """Resolve a data path: as given if it exists, else relative to the recipe file's folder."""
        return resolve_beside(relative, self._folder)


class TrainSpec(Spec):
    max_length: int = Field(512, gt=0, description="Tokens per example; longer examples are truncated.")
    epochs: float = Field(
        1.0, gt=0, description="Passes over the training data (ignored when max_steps > 0)."
    )
    max_steps: int = Field(-1, description="Optimizer steps; -1 means use epochs.")
    batch_size: int = Field(8, gt=0, description="Examples per device per micro-batch.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler: str = Field(
        "cosine", description="transformers scheduler name (cosine, linear, constant, ...)."
    )
    warmup_ratio: float = Field(
        0.03, ge=0, lt=1, description="Share of steps spent warming the learning rate up."
    )
    warmup_steps: int = Field(
        0, ge=0, description="Optimizer steps spent warming the learning rate up (instead of warmup_ratio)."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    optim: str = Field(
        "adamw_torch_fused",
        description="transformers optimizer name (adamw_torch_fused, paged_adamw_8bit, ...).",
    )
    seed: int = Field(42, description="Seed of model init, data order and dropout.")
    loss_on: Literal["assistant", "completion", "all"] = Field(
        "assistant",
        description="Tokens that carry the loss: every assistant turn, the completion, or all tokens.",
    )
    packing: bool = Field(
        False, description="Pack examples into max_length rows (BFD, no cross-example attention)."
    )
    padding_free: bool = Field(
        True,
        description="Concatenate each batch into one row without padding; each example attends only to "
        "itself (flash-attn varlen on GPU, pipeline.train.attention's per-example SDPA otherwise).",
    )
    group_by_length: bool = Field(
        False,
        description="Batch examples of similar length together (less padding when padding_free is off; "
        "costs held-out loss on short runs).",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward to save memory."
    )
    score_trained_only: bool = Field(
        True,
        description="On CPU, project only loss-carrying positions through the LM head (same loss, less work).",
    )
    precision: Literal["auto", "native", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Mixed precision; auto = bf16 autocast on GPUs that support it, native = wherever bf16 is "
        "native (CPUs with AVX512-BF16/AMX too); neither for quantized models. Else fp32.",
    )
    logging_steps: int = Field(5, gt=0, description="Log loss and learning rate every N steps.")
    eval_steps: int = Field(0, ge=0, description="Evaluate the eval loss every N steps; 0 = only at the end.")
    save_steps: int = Field(50, gt=0, description="Save a checkpoint every N steps.")
    save_total_limit: int = Field(2, gt=0, description="Keep at most N checkpoints.")
    report_to: list[str] = Field(
        default_factory=lambda: ["tensorboard"], description="Loggers: tensorboard, trackio, wandb, none."
    )
    output_dir: str = Field("runs", description="Folder that receives runs/<recipe>-<UTC time>/.")

    @model_validator(mode="before")
    @classmethod
    def _steps_replace_default_ratio(cls, data: Any) -> Any:
        # warmup_steps alone replaces the default warmup_ratio; both given explicitly is an error (below).
        if isinstance(data, dict) and data.get("warmup_steps") and "warmup_ratio" not in data:
            return {**data, "warmup_ratio": 0.0}
        return data

    @model_validator(mode="after")
    def _check_combinations(self) -> TrainSpec:
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be -1 (use epochs) or a positive number of steps")
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) and warmup_ratio ({self.warmup_ratio}) are both set; "
                "keep one and set the other to 0"
            )
        return self


class EvalSpec(Spec):
    enabled: bool = Field(True, description="Evaluate base vs adapted at the end of finetune.")
    max_examples: int = Field(64, gt=0, description="Eval records used for perplexity.")
    generate_examples: int = Field(
        8, ge=0, description="Eval records answered by greedy generation for similarity."
    )
    max_new_tokens: int = Field(64, gt=0, description="Tokens generated per answer.")
    batch_size: int = Field(8, gt=0, description="Examples per forward pass during evaluation.")
    context_length: int | None = Field(
        None,
        ge=2,
        description="Tokens per perplexity forward pass; longer examples are scored in sliding windows. "
        "None = train.max_length.",
    )
    stride: int | None = Field(
        None, gt=0, description="Tokens a sliding window advances (< the window); None = half the window."
    )
    embedding_model: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2",
        description="sentence-transformers model for answer similarity.",
    )
    samples: int = Field(3, ge=0, description="Sample generations shown in the report.")
    fail_if_worse: bool = Field(
        False, description="Exit non-zero when the adapted model is worse than the base."
    )
    perplexity_tolerance: float = Field(
        0.0, ge=0, description="Allowed relative perplexity increase before failing."
    )
    similarity_tolerance: float = Field(
        0.02, ge=0, description="Allowed drop in mean cosine similarity before failing."
    )
    safety: bool = Field(False, description="Also run the bundled refusal/over-refusal prompt set.")
    safety_tolerance: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Allowed drop in refusal rate (or rise in over-refusal rate) before failing.",
    )

    @model_validator(mode="after")
    def _stride_inside_window(self) -> EvalSpec:
        if self.stride is not None and self.context_length is not None and self.stride >= self.context_length:
            raise ValueError(
                "stride must be smaller than context_length (each window re-reads the rest as context)"
            )
        return self


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

    _name: str = PrivateAttr("recipe")
    _path: Path | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _check_method_fits_model(self) -> Recipe:
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
