"""One lever at a time: training-step cost of the same examples under each setting, interleaved in one process.

bench/train_throughput.py compares whole trainers; this isolates the levers behind the difference. It takes
the same N pre-tokenized lora-small rows, cuts them into batches of 8 (shuffled, as a random sampler gives,
or sorted by length, as group_by_length gives), and times forward + backward + AdamW over all of them for
each setting, alternating the settings in every round so a busy machine slows them alike. SmolLM2-135M with
LoRA r=16 on all linear layers; each setting is the previous one plus one lever, from TRL's defaults to
lora-small, then a few single changes to lora-small. Prints real tokens per second per setting (best round)
and the speed-up over the previous setting ("+" rows; lora-small for the others) and over the first.

    .venv/bin/python bench/train_levers.py [--examples 48] [--rounds 2] [--only trl-defaults,lora-small]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import random
import time
from typing import Any


@dataclasses.dataclass(frozen=True)
class Setting:
    """How one training step runs; the defaults are lora-small's on a CPU with native bf16."""

    batching: str = "random"  # random | grouped (sorted by length)
    padding_free: bool = True
    recompute: bool = False  # gradient checkpointing
    compact_head: bool = True  # LM head scores only the loss-carrying positions
    lean_head: bool = True  # ... through pipeline.train.cpu_head instead of trl's CPU fallback kernel
    weights: str = "bfloat16"
    autocast: bool = True  # bf16 autocast, as TRL's default and lora-small's `precision: native`
    attention: str = "packed_sdpa"  # or "sdpa": transformers' SDPA with a block mask over padding-free rows
    dropout: float = 0.0  # LoRA dropout
    peft_casts: bool = False  # peft's fp32 cast of every adapter input (lora-small skips it under autocast)
    short_kernel: bool = True  # short examples' attention as two multiplies, not SDPA's math kernel
    lora_addmm: bool = True  # LoRA updates added inside their B multiply (pipeline.train.patches.peft_lora)


LORA_SMALL = Setting()
TRL = Setting(
    padding_free=False,
    recompute=True,
    compact_head=False,
    lean_head=False,
    weights="float32",
    attention="sdpa",
    peft_casts=True,
    lora_addmm=False,
)
SETTINGS: dict[str, Setting] = {
    "trl-defaults": TRL,
    "+ no recomputation": (s1 := dataclasses.replace(TRL, recompute=False)),
    "+ padding-free rows": (s2 := dataclasses.replace(s1, padding_free=True)),
    "+ per-example attention": (s3 := dataclasses.replace(s2, attention="packed_sdpa")),
    "+ compact LM head rows": (s4 := dataclasses.replace(s3, compact_head=True)),
    "+ lean CPU LM head": (s5 := dataclasses.replace(s4, lean_head=True)),
    "+ bf16 weights": (s6 := dataclasses.replace(s5, weights="bfloat16")),
    "+ no peft input casts": (s7 := dataclasses.replace(s6, peft_casts=False)),
    "+ LoRA update in one multiply": dataclasses.replace(s7, lora_addmm=True),
    "lora-small": LORA_SMALL,
    "lora-small: LoRA dropout 0.05": dataclasses.replace(LORA_SMALL, dropout=0.05),
    "lora-small: grouped padded": dataclasses.replace(LORA_SMALL, batching="grouped", padding_free=False),
    "lora-small: recomputation": dataclasses.replace(LORA_SMALL, recompute=True),
    "lora-small: SDPA math for short examples": dataclasses.replace(LORA_SMALL, short_kernel=False),
    "lora-small: fp32 without autocast": dataclasses.replace(
        LORA_SMALL, weights="float32", autocast=False, peft_casts=True
    ),
}


def _rows(count: int) -> tuple[list[dict[str, list[int]]], Any]:
    from pipeline.config.loader import load_recipe
    from pipeline.data.splits import load_splits
    from pipeline.data.tokenize import tokenize_records
    from pipeline.models.loading import load_tokenizer

    recipe = load_recipe("lora-small", ["train.max_length=512"])
    tokenizer = load_tokenizer(recipe.model)
    data = tokenize_records(load_splits(recipe.data).train[:count], tokenizer, recipe.train)
    rows = [
        {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask, strict=True)]}
        for ids, mask in zip(data["input_ids"], data["assistant_masks"], strict=True)
    ]
    return rows, recipe


def _batches(rows: list[dict[str, list[int]]], how: str, size: int = 8) -> list[list[dict[str, list[int]]]]:
    order = list(rows)
    if how == "random":
        random.Random(0).shuffle(order)
    else:
        order.sort(key=lambda row: len(row["input_ids"]), reverse=True)
    return [order[i : i + size] for i in range(0, len(order), size)]


def _model(recipe: Any, weights: str, dropout: float) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    from pipeline.models.loading import load_base_model
    from pipeline.train.attention import register_packed_sdpa

    register_packed_sdpa()
    torch.manual_seed(0)
    model = load_base_model(recipe.model.model_copy(update={"dtype": weights}))
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # what SFTTrainer asks for
    config = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, config)
    model.train()
    return model


def _prepare(model: Any, setting: Setting) -> None:
    """Switch recomputation and the attention kernel of the shared model to the setting's."""
    base = model.get_base_model()
    if setting.recompute:  # as transformers.Trainer does for PEFT models under gradient checkpointing
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    elif base.is_activation_checkpointing:
        base.activation_checkpointing_disable()
        base.disable_input_require_grads()
    base.set_attn_implementation(setting.attention)


def _time(model: Any, batches: list[Any], setting: Setting, pad_id: int) -> float:
    """Seconds for forward + backward + optimizer step over all batches."""
    import torch
    from peft.helpers import disable_input_dtype_casting
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from pipeline.train.attention import short_example_kernel
    from pipeline.train.patches.peft_lora import lora_updates_in_one_multiply
    from pipeline.train.patches.trl_lm_head import trained_positions_only

    _prepare(model, setting)
    collate = DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=setting.padding_free)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-9, fused=True)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16, enabled=setting.autocast))
        stack.enter_context(disable_input_dtype_casting(model, active=not setting.peft_casts))
        stack.enter_context(lora_updates_in_one_multiply(model, active=setting.lora_addmm))
        stack.enter_context(trained_positions_only(setting.compact_head, lean_cpu_kernel=setting.lean_head))
        stack.enter_context(short_example_kernel(setting.short_kernel))
        for examples in batches:
            batch = collate(examples)
            loss = model(**batch, use_cache=False, fused_lm_head=True).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def main() -> None:
    """Time every setting on the same rows, alternating, and print tokens/s and speed-ups."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default=",".join(SETTINGS), help="comma-separated setting names")
    args = parser.parse_args()
    names = args.only.split(",")
    rows, recipe = _rows(args.examples)
    real = sum(len(row["input_ids"]) for row in rows)
    from pipeline.models.loading import load_tokenizer

    pad_id = load_tokenizer(recipe.model).pad_token_id
    kinds = {(SETTINGS[name].weights, SETTINGS[name].dropout) for name in names}
    models = {kind: _model(recipe, *kind) for kind in kinds}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            setting = SETTINGS[name]
            batches = _batches(rows, setting.batching)
            seconds[name].append(_time(models[setting.weights, setting.dropout], batches, setting, pad_id))
    # The fastest round: on a shared machine other work only ever adds time.
    rates = {name: real / min(values) for name, values in seconds.items()}
    first, previous = rates[names[0]], rates[names[0]]
    for name, rate in rates.items():
        chained = name.startswith("+") or name == names[0]
        step = rate / previous if chained else rate / rates.get("lora-small", rate)
        print(f"{name:<32} real tok/s {rate:7.1f}   x{step:4.2f} step   x{rate / first:4.2f} vs {names[0]}")
        previous = rate
    print(json.dumps({"real_tokens": real, "rounds": args.rounds, "tokens_per_s": rates}))


if __name__ == "__main__":
    main()
