"""One lever at a time: training-step cost of the same examples under each setting, interleaved in one process.

bench/train_throughput.py compares whole trainers; this isolates the levers behind the difference. It loads
SmolLM2-135M-Instruct with LoRA r=16 (all linear, dropout 0.05) once, takes the same N pre-tokenized
lora-small rows, cuts them into batches of 8 either at random (what a shuffled sampler gives) or sorted by
length (what group_by_length gives), and times forward + backward + AdamW over all of them for each setting,
alternating the settings in every round so a busy machine slows them alike. Prints real tokens per second
per setting (best round) and the speed-up over the first setting.

    .venv/bin/python bench/train_levers.py [--examples 32] [--rounds 2] [--only grouped-padded,...]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

# name -> (batching, padding_free, gradient checkpointing, score trained positions only, base dtype)
SETTINGS: dict[str, tuple[str, bool, bool, bool, str]] = {
    "trl-defaults": ("random", False, True, False, "float32"),
    "trl-padding-free": ("random", True, True, False, "float32"),
    "random-padded-no-ckpt": ("random", False, False, False, "float32"),
    "grouped-padded-full-head": ("grouped", False, False, False, "float32"),
    "grouped-padding-free": ("grouped", True, False, True, "float32"),
    "grouped-padded": ("grouped", False, False, True, "float32"),
    "grouped-padded-bf16-base": ("grouped", False, False, True, "bfloat16"),
}


def _rows(count: int) -> tuple[list[dict[str, list[int]]], Any]:
    from pipeline.data import load_splits, tokenize_records
    from pipeline.modeling import load_tokenizer
    from pipeline.recipe import load_recipe

    recipe = load_recipe("lora-small", ["train.max_length=512"])
    tokenizer = load_tokenizer(recipe.model)
    data = tokenize_records(load_splits(recipe).train[:count], tokenizer, recipe)
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


def _model(recipe: Any, dtype: str) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    from pipeline.modeling import load_base_model

    spec = recipe.model.model_copy(update={"dtype": dtype})
    torch.manual_seed(0)
    model = load_base_model(spec)
    add_fused_lm_head(model)
    config = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, config)
    model.train()
    return model


def _time(
    model: Any, batches: list[Any], padding_free: bool, ckpt: bool, compact: bool, pad_id: int
) -> float:
    """Seconds for forward + backward + optimizer step over all batches."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from pipeline.speed import score_trained_positions_only

    collate = DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=padding_free)
    base = model.get_base_model()
    if ckpt:  # as transformers.Trainer does for PEFT models under gradient checkpointing
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    elif base.is_activation_checkpointing:
        base.activation_checkpointing_disable()
        base.disable_input_require_grads()
    score_trained_positions_only(compact)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-9, fused=True)
    started = time.perf_counter()
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
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default=",".join(SETTINGS), help="comma-separated setting names")
    args = parser.parse_args()
    names = args.only.split(",")
    rows, recipe = _rows(args.examples)
    real = sum(len(row["input_ids"]) for row in rows)
    from pipeline.modeling import load_tokenizer

    pad_id = load_tokenizer(recipe.model).pad_token_id
    models = {dtype: _model(recipe, dtype) for dtype in {SETTINGS[name][4] for name in names}}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            how, padding_free, ckpt, compact, dtype = SETTINGS[name]
            seconds[name].append(
                _time(models[dtype], _batches(rows, how), padding_free, ckpt, compact, pad_id)
            )
    # The fastest round: on a shared machine other work only ever adds time.
    rates = {name: real / min(values) for name, values in seconds.items()}
    first = rates[names[0]]
    for name, rate in rates.items():
        print(f"{name:<28} real tok/s {rate:7.1f}   x{rate / first:4.2f} vs {names[0]}")
    print(json.dumps({"real_tokens": real, "rounds": args.rounds, "tokens_per_s": rates}))


if __name__ == "__main__":
    main()
