"""`pipeline plan`: peak memory per device for a recipe, estimated before any weight is loaded.

The model is built from its config.json on torch's meta device (shapes only, no memory), and peft wraps
that empty model, so parameter counts, quantizable layers and trainable (LoRA/DoRA) counts are exact for
any architecture. Memory then follows from bytes per value:

  weights      frozen base in its dtype; 4-bit layers 0.5 byte + quantization constants
  trainable    LoRA/DoRA weights (peft keeps them in fp32) or, for full fine-tuning, the weights themselves
  gradients    one value per trainable weight (DDP adds an equal set of communication buckets)
  optimizer    AdamW: 2 states per trainable weight (8-bit optimizers: 1 byte each)
  activations  values autograd keeps per token for backward, x batch_size x max_length tokens (worst case:
               every example at max_length); with gradient checkpointing only each layer's input + one layer
  logits       vocab-sized fp32 rows per token: logits, log-softmax and its gradient
  runtime      CUDA context and kernels on a GPU; the Python/torch process itself on CPU

Sharding: ZeRO-2 splits gradients and optimizer states over the GPUs, FSDP and ZeRO-3 split everything
but activations and add the gathered weights of the layers in flight. The accuracy of these numbers
against measured peaks is in docs/scaling.md and bench/plan_accuracy.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.config.schema import ModelSpec, Recipe
from pipeline.errors import RecipeError
from pipeline.train.stages.registry import stage as training_stage

Strategy = Literal["ddp", "fsdp", "zero2", "zero3"]
STRATEGIES = ("ddp", "fsdp", "zero2", "zero3")
GIB = 1024**3
# Bytes of the process itself, measured here: CUDA context + cuBLAS/kernels on a GPU (not part of
# torch.cuda.max_memory_allocated); on CPU the RSS of Python with torch/transformers/trl imported and the
# tokenized data loaded (0.6 GiB measured here, bench/plan_accuracy.py).
RUNTIME_BYTES = {"cuda": int(1.0 * GIB), "cpu": int(0.6 * GIB)}
# 4-bit NF4/FP4: 0.5 byte per weight + one fp32 absmax per 64 weights; double quantization stores those
# as 8-bit with one fp32 constant per 256 blocks.
FOUR_BIT_BYTES = {True: 0.5 + 1 / 64 + 4 / (64 * 256), False: 0.5 + 4 / 64}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
SIZE_UNITS = {
    "": GIB,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "kib": 1024,
    "m": 1e6,
    "mb": 1e6,
    "mib": 1024**2,
    "g": 1e9,
    "gb": 1e9,
    "gib": GIB,
    "t": 1e12,
    "tb": 1e12,
    "tib": 1024**4,
}


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on, read from config.json through an empty (meta-device) model."""

    params: int  # all weights of the base model
    quantizable: int  # weights in nn.Linear layers other than the output head (what bitsandbytes quantizes)
    trainable: int  # LoRA/DoRA/modules_to_save weights, or every weight for full fine-tuning
    layers: int
    hidden: int
    intermediate: int
    q_width: int  # attention heads x head dim
    kv_width: int  # key/value heads x head dim
    vocab: int
    largest_layer: int  # weights of one decoder layer (what FSDP/ZeRO-3 gather at a time)
    dropout_inputs: int  # per token: input values of LoRA-targeted layers in one decoder layer


@dataclass
class Estimate:
    """Peak bytes per device, by component, for one setting of batch size and checkpointing."""

    rows: list[tuple[str, int, str]]
    batch_size: int
    grad_accum: int
    gradient_checkpointing: bool
    gpus: int
    strategy: str
    device: str
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Estimated peak bytes on one device."""
        return sum(size for _, size, _ in self.rows)


def parse_size(text: str) -> int:
    """'80GiB', '80GB', '24g', '81920MiB' or a bare number of GiB -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in SIZE_UNITS:
        raise RecipeError(f"--gpu-memory '{text}': not a size; write it like 80GiB, 24GB or 40 (GiB).")
    return int(float(match.group(1)) * SIZE_UNITS[unit])


def _layer_input_widths(layer: Any, targets: set[str]) -> int:
    import torch

    return sum(
        m.in_features for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear) and n in targets
    )


def model_shape(recipe: Recipe) -> ModelShape:
    """Parameter counts and dimensions of the recipe's model and adapter, from config.json only."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from pipeline.models.adapters import build_peft_config
    from pipeline.models.assets import resolve_model

    folder = resolve_model(recipe.model.name, recipe.model.revision)
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=recipe.model.trust_remote_code)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=recipe.model.trust_remote_code)
    head = model.get_output_embeddings()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    layers = next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList))
    params = sum(p.numel() for p in model.parameters())
    largest = max(sum(p.numel() for p in layer.parameters()) for layer in layers)
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    peft_config = build_peft_config(recipe.adapter)
    trainable, dropout_inputs = params, 0
    if peft_config is not None:
        from peft import get_peft_model

        peft_model = get_peft_model(model, peft_config)
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        first = layers[0]  # now holding peft's LoRA layers: their frozen originals are the base_layers
        dropout_inputs = _layer_input_widths(
            first, {n for n, _ in first.named_modules() if n.endswith(".base_layer")}
        )
    return ModelShape(
        params=params,
        quantizable=sum(m.weight.numel() for m in linears),
        trainable=trainable,
        layers=len(layers),
        hidden=text.hidden_size,
        intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size),
        q_width=heads * head_dim,
        kv_width=getattr(text, "num_key_value_heads", heads) * head_dim,
        vocab=text.vocab_size,
        largest_layer=largest,
        dropout_inputs=dropout_inputs,
    )


def _dtype_bytes(spec: ModelSpec, device: str) -> int:
    name = spec.dtype
    if name in ("auto", "native"):  # the plan is for the target device; a CPU target is this machine's
        from pipeline.models.precision import bf16_is_native

        bf16 = device == "cuda" or (name == "native" and bf16_is_native())
        name = "bfloat16" if bf16 else "float32"
    return DTYPE_BYTES[name]


def _optimizer_bytes(optim: str, param_bytes: int) -> float:
    """Optimizer-state bytes per trainable weight."""
    name = optim.lower()
    if "8bit" in name:
        return 2.0
    if "adafactor" in name:
        return 0.0  # factored second moments: rows + columns, negligible
    if "sgd" in name or "lion" in name:
        return float(param_bytes) if "lion" in name else 0.0
    return 2.0 * param_bytes  # Adam/AdamW: exp_avg and exp_avg_sq in the weights' dtype


def activation_bytes_per_token(
    shape: ModelShape, act: int, checkpointing: bool, lora_dropout: bool, lm_head: bool = True
) -> float:
    """Bytes kept for backward per token of a micro-batch, vocab-sized logits included (lm_head False: a
    reward model's score head, one value per sequence, instead).

    Per decoder layer autograd keeps: both norms' inputs and outputs (4 x hidden), q/k/v outputs and
    their rotary copies (2 x (q + 2 kv) - kv), the attention output (q; SDPA/flash keep no seq x seq
    matrix), the MLP's gate, up, activation and product (4 x intermediate); with LoRA dropout also the
    dropped-out input of every targeted layer (+1 byte mask per value).
    """
    per_layer = (
        4 * shape.hidden + 2 * shape.q_width + 3 * shape.kv_width + shape.q_width + 4 * shape.intermediate
    )
    per_layer_bytes = per_layer * act + (shape.dropout_inputs * (act + 1) if lora_dropout else 0)
    # Logits in the model dtype, their fp32 copy for the loss, log-softmax and its gradient (fp32).
    logits = shape.vocab * (act + 4 * 3) if act != 4 else shape.vocab * 4 * 3
    logits = logits if lm_head else 0
    if checkpointing:
        return shape.layers * shape.hidden * act + per_layer_bytes + logits
    return shape.layers * per_layer_bytes + logits


def estimate(
    recipe: Recipe,
    shape: ModelShape,
    gpus: int = 1,
    strategy: Strategy = "ddp",
    device: str = "cuda",
    batch_size: int | None = None,
    gradient_checkpointing: bool | None = None,
    grad_accum: int | None = None,
) -> Estimate:
    """Peak memory per device for the recipe (or the given batch size / checkpointing) on gpus devices."""
    train = recipe.train
    batch = batch_size or train.batch_size
    ckpt = train.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing
    act = (
        2
        if device == "cuda"
        and (train.precision in ("bf16", "fp16", "native") or _dtype_bytes(recipe.model, device) == 2)
        else 4
    )
    weight_bytes = _dtype_bytes(recipe.model, device)
    full = recipe.adapter.method == "full"
    world = max(gpus, 1)
    shard_all = strategy in ("fsdp", "zero3") and world > 1
    shard_states = strategy in ("fsdp", "zero2", "zero3") and world > 1

    if recipe.model.quantization == "4bit":
        base = shape.quantizable * FOUR_BIT_BYTES[recipe.model.double_quant]
        base += (shape.params - shape.quantizable) * weight_bytes
        base_note = f"{shape.quantizable / 1e6:,.1f}M weights in 4-bit, the rest in {weight_bytes * 8}-bit"
    elif recipe.model.quantization == "8bit":
        base = shape.quantizable + (shape.params - shape.quantizable) * weight_bytes
        base_note = f"{shape.quantizable / 1e6:,.1f}M weights in 8-bit"
    else:
        base = shape.params * weight_bytes
        base_note = f"{shape.params / 1e6:,.1f}M weights x {weight_bytes} bytes"
    trainable_bytes = weight_bytes if full else 4  # peft keeps adapter weights in fp32
    rows: list[tuple[str, int, str]] = []
    split = world if shard_all else 1
    rows.append(("base weights", int(base / split), base_note + (f", / {world} shards" if split > 1 else "")))
    if not full:
        rows.append(
            (
                "adapter weights",
                int(shape.trainable * 4 / split),
                f"{shape.trainable / 1e6:,.2f}M trainable, fp32",
            )
        )
    states_split = world if shard_states else 1
    grads = shape.trainable * trainable_bytes / states_split
    rows.append(
        (
            "gradients",
            int(grads),
            f"{trainable_bytes} bytes per trainable weight"
            + (f", / {world} shards" if states_split > 1 else ""),
        )
    )
    if strategy == "ddp" and world > 1:
        rows.append(("DDP gradient buckets", int(grads), "all-reduce copy of the gradients"))
    opt = shape.trainable * _optimizer_bytes(train.optim, trainable_bytes) / states_split
    rows.append(
        ("optimizer states", int(opt), f"{train.optim}" + (f", / {world} shards" if states_split > 1 else ""))
    )
    if shard_all:
        rows.append(
            (
                "gathered layers",
                int(2 * shape.largest_layer * weight_bytes),
                "2 decoder layers unsharded in flight",
            )
        )
    # DPO runs chosen and rejected rows of every pair in one batch; KTO each completion and a mismatched
    # one for its KL estimate: twice the rows SFT runs, with activations kept for backward.
    stage = training_stage(train.stage)
    rows_per_example = stage.rows_per_example
    settings = recipe.stage_settings
    precomputed = bool(getattr(settings, "precompute_ref_log_probs", False))
    if full and stage.reference and not precomputed:
        rows.append(("reference model", int(base / split), "a frozen copy of the base for the reference"))
    if stage.teacher:  # distillation: the frozen teacher beside the student, in the student's dtype
        from pipeline.train.teacher import resolve_teacher, teacher_parameters

        teacher = teacher_parameters(resolve_teacher(recipe))
        rows.append(("teacher model", teacher * weight_bytes, f"{teacher / 1e6:,.1f}M weights, frozen"))
    tokens = batch * rows_per_example * train.max_length
    lora_dropout = not full and recipe.adapter.dropout > 0
    per_token = activation_bytes_per_token(shape, act, ckpt, lora_dropout, lm_head=stage.head != "score")
    rows.append(
        (
            "activations",
            int(tokens * per_token),
            f"{batch}{f' x {rows_per_example} ({train.stage} rows)' if rows_per_example > 1 else ''} x "
            f"{train.max_length} tokens, "
            + ("checkpointed" if ckpt else "no checkpointing")
            + f", {act}-byte values"
            + (" + fp32 logits" if stage.head != "score" else ", one score per row"),
        )
    )
    rows.append(
        (
            "runtime",
            RUNTIME_BYTES[device],
            "CUDA context and kernels" if device == "cuda" else "Python + torch process",
        )
    )
    return Estimate(
        rows=rows,
        batch_size=batch,
        grad_accum=grad_accum or train.grad_accum,
        gradient_checkpointing=ckpt,
        gpus=world,
        strategy=strategy,
        device=device,
    )


def propose(
    recipe: Recipe,
    shape: ModelShape,
    memory: int,
    gpus: int = 1,
    strategy: Strategy = "ddp",
    device: str = "cuda",
) -> Estimate | None:
    """The largest batch (checkpointing only if needed) that fits `memory`, keeping the recipe's global batch.

    Global batch = batch_size x grad_accum as the recipe states it; with N devices accumulation shrinks so
    batch x accumulation x N stays at least that. None when even batch 1 with checkpointing does not fit.
    """
    wanted = recipe.train.batch_size * recipe.train.grad_accum
    sizes = sorted(
        {recipe.train.batch_size, *(2**k for k in range(int(math.log2(max(wanted, 1))) + 1))}, reverse=True
    )
    for checkpointing in (False, True):
        for batch in sizes:
            accum = max(1, math.ceil(wanted / (batch * max(gpus, 1))))
            candidate = estimate(recipe, shape, gpus, strategy, device, batch, checkpointing, accum)
            if candidate.total <= memory:
                return candidate
    return None


def print_plan(recipe: Recipe, gpus: int, memory: int | None, strategy: Strategy, device: str) -> Estimate:
    """Print the breakdown for the recipe as written and, with a memory budget, a setting that fits."""
    from rich.console import Console
    from rich.table import Table

    if strategy not in STRATEGIES:
        raise RecipeError(f"--strategy '{strategy}': use one of {', '.join(STRATEGIES)}.")
    shape = model_shape(recipe)
    current = estimate(recipe, shape, gpus, strategy, device)
    console = Console()
    where = f"{current.gpus} x {device.upper()}" + (f" ({strategy})" if current.gpus > 1 else "")
    table = Table(
        title=f"{recipe.name}: peak memory per device, {where}", show_header=True, header_style="bold"
    )
    for column, justify in (("component", "left"), ("GiB", "right"), ("how", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, size, note in current.rows:
        table.add_row(name, f"{size / GIB:.2f}", note)
    table.add_row(
        "[bold]total", f"[bold]{current.total / GIB:.2f}", "estimate; measured peaks: docs/scaling.md"
    )
    console.print(table)
    other = estimate(
        recipe, shape, gpus, strategy, device, gradient_checkpointing=not current.gradient_checkpointing
    )
    console.print(
        f"with gradient checkpointing {'off' if current.gradient_checkpointing else 'on'}: "
        f"{other.total / GIB:.2f} GiB"
    )
    if memory is None:
        return current
    budget = f"{memory / GIB:.1f} GiB"
    if current.total <= memory:
        console.print(
            f"[green]fits[/] in {budget} as written (batch {current.batch_size}, accumulation "
            f"{current.grad_accum}, checkpointing {'on' if current.gradient_checkpointing else 'off'})."
        )
        return current
    fit = propose(recipe, shape, memory, gpus, strategy, device)
    if fit is None:
        console.print(
            f"[red]does not fit[/] in {budget} even with batch 1 and checkpointing; use more GPUs with "
            "fsdp/zero3, model.quantization=4bit, or a shorter train.max_length."
        )
        return current
    console.print(
        f"[yellow]does not fit[/] in {budget} as written; this does ({fit.total / GIB:.2f} GiB): "
        f"train.batch_size={fit.batch_size} train.grad_accum={fit.grad_accum} "
        f"train.gradient_checkpointing={str(fit.gradient_checkpointing).lower()}"
    )
    return fit
