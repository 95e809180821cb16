"""The decoding engine under `pipeline serve`, measured in-process on the same greedy prompts: today's dynamic
batching (left-padded `generate` over waiting requests, pipeline.inference.generation.generate_batch) against
transformers' continuous batching with a paged KV cache (`model.generate_batch`, transformers.generation.
continuous_batching). Prints requests/s, generated tokens/s, the ratio and whether the greedy answers agree.

    .venv/bin/python bench/continuous_batching.py --requests 32 --batch 8 --max-tokens 24 [--rounds 2]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from serve_load import MODEL, QUESTIONS  # noqa: E402  # the same prompts as the load test


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _prompts(tokenizer: Any, count: int) -> list[str]:
    conversations = [[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}] for i in range(count)]
    return [
        tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations
    ]


def today(
    model: Any, tokenizer: Any, prompts: list[str], batch: int, tokens: int
) -> tuple[list[list[int]], int]:
    """Our server's engine: waiting requests decoded together in left-padded batches of `batch`."""
    from pipeline.inference.generation import Sampling, generate_batch

    answers: list[list[int]] = []
    generated = 0
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        completions, _ = generate_batch(model, tokenizer, chunk, Sampling(max_new_tokens=tokens))
        for (completion,) in completions:
            answers.append(tokenizer(completion.text, add_special_tokens=False)["input_ids"])
            generated += completion.tokens
    return answers, generated


def continuous(
    model: Any, tokenizer: Any, prompts: list[str], batch: int, tokens: int
) -> tuple[list[list[int]], int]:
    """transformers' continuous batching: every request queued at once, `batch` sequences at a time in a paged cache."""
    from transformers import ContinuousBatchingConfig, GenerationConfig

    inputs = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    cb = ContinuousBatchingConfig(
        max_requests_per_batch=batch, max_batch_tokens=batch * max(len(i) for i in inputs)
    )
    outputs = model.generate_batch(inputs, config, continuous_batching_config=cb, warmup=False)
    ordered = sorted(outputs.values(), key=lambda o: int(o.request_id.split("_")[-1]))
    answers = [[t for t in o.generated_tokens if t != tokenizer.eos_token_id] for o in ordered]
    text_ids = [
        tokenizer(tokenizer.decode(a, skip_special_tokens=True), add_special_tokens=False)["input_ids"]
        for a in answers
    ]
    return text_ids, sum(len(o.generated_tokens) for o in ordered)


def main() -> int:
    """Both engines on the same prompts, `rounds` times each, alternating; the best round of each is kept."""
    import torch

    from pipeline.config.schema import ModelSpec
    from pipeline.models.assets import resolve_model
    from pipeline.models.loading import load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    spec = ModelSpec(name=MODEL)
    tokenizer = load_tokenizer(spec)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(resolve_model(MODEL, None)), dtype=torch.float32).eval()
    prompts = _prompts(tokenizer, args.requests)
    engines = {"dynamic batching (today)": today, "continuous batching (transformers)": continuous}
    best: dict[str, tuple[float, int, list[list[int]]]] = {}
    for _ in range(args.rounds):
        for name, engine in engines.items():
            started = time.perf_counter()
            answers, generated = engine(model, tokenizer, prompts, args.batch, args.max_tokens)
            seconds = time.perf_counter() - started
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, generated, answers)
    print(f"{args.requests} greedy requests, {args.max_tokens} new tokens at most, batches of {args.batch}; "
          f"{MODEL} fp32, torch threads {torch.get_num_threads()}, CPU {_cpu()}\n")  # fmt: skip
    print("| engine | seconds | requests/s | tokens/s | vs today | same greedy answers |")
    print("|---|---|---|---|---|---|")
    base_seconds, _, base_answers = best["dynamic batching (today)"]
    for name, (seconds, generated, answers) in best.items():
        same = sum(a == b for a, b in zip(answers, base_answers, strict=True))
        print(f"| {name} | {seconds:.1f} | {args.requests / seconds:.2f} | {generated / seconds:.1f} "
              f"| {base_seconds / seconds:.2f}x | {same}/{args.requests} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
