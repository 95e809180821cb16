"""The recipe's train and eval sections: how a run trains, and how base and adapted models are scored."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.config.base import MAX_BATCH, MAX_COUNT, MAX_SEED, MAX_TOKENS, Spec
from pipeline.config.stages import StageName


class TrainSpec(Spec):
    stage: StageName = Field(
        "sft",
        description="What training optimizes: sft (supervised, on conversations), dpo (preference pairs, "
        "settings in the dpo section), orpo and simpo (the same pairs, no reference model; the orpo and simpo "
        "sections), kto (completions labelled good or bad; the kto section) or grpo "
        "(prompts, sampled answers scored by reward functions; the grpo section); rloo as grpo with "
        "leave-one-out baselines (the rloo section). docs/preference.md."
        " distill: a student learns a teacher's next-token distribution (the distill section).",
    )
    max_length: int = Field(
        512, gt=0, le=MAX_TOKENS, description="Tokens per example; longer examples are truncated."
    )
    epochs: float = Field(
        1.0, gt=0, le=1000, description="Passes over the training data (ignored when max_steps > 0)."
    )
    max_steps: int = Field(-1, le=MAX_COUNT, description="Optimizer steps; -1 means use epochs.")
    batch_size: int = Field(8, gt=0, le=MAX_BATCH, description="Examples per device per micro-batch.")
    grad_accum: int = Field(1, gt=0, le=MAX_BATCH, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(2e-4, gt=0, le=1, description="Peak learning rate.")
    lr_scheduler: str = Field(
        "cosine", description="transformers scheduler name (cosine, linear, constant, ...)."
    )
    warmup_ratio: float = Field(
        0.03, ge=0, lt=1, description="Share of steps spent warming the learning rate up."
    )
    warmup_steps: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="Optimizer steps spent warming the learning rate up (instead of warmup_ratio).",
    )
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, le=1e4, description="Gradient clipping norm.")
    optim: str = Field(
        "adamw_torch_fused",
        description="transformers optimizer name (adamw_torch_fused, paged_adamw_8bit, ...).",
    )
    seed: int = Field(42, ge=0, le=MAX_SEED, description="Seed of model init, data order and dropout.")
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
    keep_freed_memory: bool = Field(
        True,
        description="On CPU, glibc's malloc keeps freed buffers for the next step instead of returning them to "
        "the kernel (no page faults per step; peak memory about the same, up to 0.5 GB more with long rows of "
        "varying length); false leaves the allocator as it is.",
    )
    precision: Literal["auto", "native", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Mixed precision; auto = bf16 autocast on GPUs that support it, native = wherever bf16 is "
        "native (CPUs with AVX512-BF16/AMX too); neither for quantized models. Else fp32.",
    )
    logging_steps: int = Field(5, gt=0, le=MAX_COUNT, description="Log loss and learning rate every N steps.")
    eval_steps: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="Compute the held-out loss on the eval split every N steps (a curve in report.html); "
        "0 = no loss evaluation during training.",
    )
    early_stopping_patience: int | None = Field(
        None,
        gt=0,
        le=MAX_COUNT,
        description="Stop after this many evaluations (every eval_steps) without the held-out loss improving "
        "by early_stopping_threshold, and keep the best checkpoint's weights; None = never stop early.",
    )
    early_stopping_threshold: float = Field(
        0.0, ge=0, le=10, description="Smallest drop in held-out loss that counts as an improvement."
    )
    save_steps: int = Field(50, gt=0, le=MAX_COUNT, description="Save a checkpoint every N steps.")
    save_total_limit: int = Field(2, gt=0, le=MAX_COUNT, description="Keep at most N checkpoints.")
    report_to: list[Literal["tensorboard", "trackio", "wandb", "mlflow", "none"]] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Experiment trackers, writing under the run folder: tensorboard, trackio, wandb (offline "
        "unless WANDB_MODE says otherwise), mlflow (a local file store unless MLFLOW_TRACKING_URI is set), "
        "none. All but tensorboard are extras: pip install -e '.[wandb]'.",
    )
    output_dir: str = Field("runs", description="Folder that receives runs/<recipe>-<UTC time>/.")
    distributed_timeout: int = Field(
        10800,
        ge=5,
        le=7 * 24 * 3600,
        description="Seconds a rank of a multi-process run waits at a collective (gradient all-reduce, "
        "barrier) before failing; the other ranks wait this long while rank 0 evaluates and reports. "
        "A failure on any rank stops all ranks at once regardless.",
    )
    data_wait_timeout: int = Field(
        3600,
        ge=5,
        le=7 * 24 * 3600,
        description="Seconds the other ranks of a machine wait while its first rank resolves the model "
        "and prepares the data (reading, hygiene, tokenizing) once for all of them; then they fail "
        "saying what they waited for.",
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

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
        if self.early_stopping_patience and not self.eval_steps:
            raise ValueError(
                "early_stopping_patience needs the held-out loss during training; set train.eval_steps (e.g. 20)"
            )
        if self.early_stopping_patience and self.save_steps % self.eval_steps:
            raise ValueError(
                f"early stopping keeps the best checkpoint, so train.save_steps ({self.save_steps}) must be a "
                f"multiple of train.eval_steps ({self.eval_steps}); set save_steps to {self.eval_steps}"
            )
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) and warmup_ratio ({self.warmup_ratio}) are both set; "
                "keep one and set the other to 0"
            )
        return self


class JudgeSpec(Spec):
    """eval.judge: an OpenAI-compatible chat endpoint compares base and adapted answers, in both orders."""

    endpoint: str = Field(
        description="Base URL of the API, e.g. http://127.0.0.1:8000/v1 (`pipeline serve`)."
    )
    model: str = Field(description="The judge model's name at that endpoint.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (never stored or shown)."
    )
    max_tokens: int = Field(8, gt=0, le=MAX_TOKENS, description="Tokens of each verdict.")
    timeout: float = Field(60.0, gt=0, le=3600, description="Seconds to wait for one verdict.")

    @field_validator("endpoint")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("endpoint must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        return value


class ForgettingGate(Spec):
    """eval.gate: did the adapted model lose general ability (general-text perplexity, benchmarks)?"""

    forgetting: bool = Field(
        False,
        description="Exit non-zero when general-text perplexity or a benchmark is worse than the base beyond "
        "the tolerances below (checked and reported either way; eval.fail_if_worse enforces it too).",
    )
    general_perplexity_tolerance: float = Field(
        0.05, ge=0, le=100, description="Allowed relative rise of general-text perplexity."
    )
    benchmark_tolerance: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Allowed drop of a benchmark's main score (accuracy, exact match: 0-1); over N questions one "
        "question moves it by 1/N.",
    )


class EvalSpec(Spec):
    enabled: bool = Field(True, description="Evaluate base vs adapted at the end of finetune.")
    base: bool = Field(
        True,
        description="Also evaluate the base model before training (reused from the cache when nothing that "
        "changes its metrics changed); false = adapted-only metrics and no regression gate.",
    )
    max_examples: int = Field(64, gt=0, le=MAX_COUNT, description="Eval records used for perplexity.")
    generate_examples: int = Field(
        8, ge=0, le=MAX_COUNT, description="Eval records answered by greedy generation for similarity."
    )
    max_new_tokens: int = Field(64, gt=0, le=MAX_TOKENS, description="Tokens generated per answer.")
    batch_size: int = Field(
        8, gt=0, le=MAX_BATCH, description="Examples per forward pass during evaluation (and eval_steps)."
    )
    context_length: int | None = Field(
        None,
        ge=2,
        le=MAX_TOKENS,
        description="Tokens per perplexity forward pass; longer examples are scored in sliding windows. "
        "None = train.max_length.",
    )
    stride: int | None = Field(
        None,
        gt=0,
        le=MAX_TOKENS,
        description="Tokens a sliding window advances (< the window); None = half the window.",
    )
    embedding_model: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2",
        description="sentence-transformers model for answer similarity.",
    )
    samples: int = Field(3, ge=0, le=1000, description="Sample generations shown in the report.")
    fail_if_worse: bool = Field(
        False, description="Exit non-zero when the adapted model is worse than the base."
    )
    perplexity_tolerance: float = Field(
        0.0, ge=0, le=100, description="Allowed relative perplexity increase before failing."
    )
    similarity_tolerance: float = Field(
        0.02, ge=0, le=2, description="Allowed drop in mean cosine similarity before failing."
    )
    preference_tolerance: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Allowed drop in preference accuracy on held-out pairs (train.stage: dpo) before failing.",
    )
    benchmarks: list[str] = Field(
        default_factory=list,
        description="lm-evaluation-harness tasks run on base and adapted: shipped offline (offline_mmlu, "
        "offline_bbh_mc, offline_bbh_gen) or any lm-eval task whose data is in the local Hugging Face cache.",
    )
    benchmark_limit: int | None = Field(
        None, gt=0, le=MAX_COUNT, description="Examples per benchmark task (the first N); None = all."
    )
    benchmark_fewshot: int | None = Field(
        None,
        ge=0,
        le=64,
        description="Few-shot examples per benchmark prompt; None = each task's own setting.",
    )
    general_text: bool = Field(
        False,
        description="Also measure perplexity on the shipped general-English text (not the training domain): "
        "a forgetting check.",
    )
    general_text_examples: int = Field(
        64, gt=0, le=MAX_COUNT, description="Passages of the general-text set scored (the first N)."
    )
    gate: ForgettingGate = Field(
        default_factory=ForgettingGate,
        description="The forgetting gate: general perplexity and benchmarks against the base.",
    )
    judge: JudgeSpec | None = Field(
        None,
        description="Pairwise judge of base vs adapted answers ({endpoint, model}); needs generate_examples > 0. "
        "None = off.",
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
        if self.judge is not None and (self.generate_examples == 0 or not self.base):
            raise ValueError(
                "judge compares base and adapted answers: set eval.generate_examples above 0 and eval.base: true"
            )
        if self.gate.forgetting and not self.base:
            raise ValueError(
                "gate.forgetting compares with the base model but base is false; set eval.base: true"
            )
        if self.fail_if_worse and not self.base:
            raise ValueError(
                "fail_if_worse compares with the base model's metrics but base is false; "
                "set eval.base: true or eval.fail_if_worse: false"
            )
        return self
