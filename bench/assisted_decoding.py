"""Greedy decoding speed of SmolLM2-135M with and without an assistant (speculative decoding).

Assistants: the first K layers of the same model (a cheap draft sharing its tokenizer) and, as an upper
bound on acceptance, the full model itself. Prints tokens/s, the speed ratio to plain greedy decoding
and whether the answers are identical (they must be: assisted greedy decoding is exact).

    .venv/bin/python bench/assisted_decoding.py --layers 6 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json

QUESTIONS = [
    "What is the capital of France?",
    "Explain what a Python list comprehension is.",
    "Give three tips for writing clear emails.",
    "What does the json.dumps function do?",
]


def main() -> None:
    """Run the comparison and print one JSON line per setting."""
    import torch
    from transformers import AutoModelForCausalLM

    from pipeline.config.schema import ModelSpec
    from pipeline.inference.generation import Sampling, generate
    from pipeline.models.assets import resolve_model
    from pipeline.models.loading import load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--layers", type=int, default=6, help="Layers kept in the draft model.")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument(
        "--prompts", type=int, default=len(QUESTIONS), help="How many of the questions to ask."
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default).")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    folder = resolve_model(args.model)
    tokenizer = load_tokenizer(ModelSpec(name=args.model), folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    draft = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, num_hidden_layers=args.layers
    ).eval()
    conversations = [[{"role": "user", "content": q}] for q in QUESTIONS[: args.prompts]]
    sampling = Sampling(max_new_tokens=args.max_new_tokens)
    generate(model, tokenizer, conversations[:1], Sampling(max_new_tokens=4), batch_size=1)  # warm-up
    plain = generate(model, tokenizer, conversations, sampling, batch_size=1)
    print(
        json.dumps(
            {
                "setting": "greedy",
                "tokens_per_second": round(plain.tokens_per_second, 1),
                "tokens": plain.new_tokens,
            }
        )
    )
    for name, assistant in (
        (f"assisted by first {args.layers} layers", draft),
        ("assisted by itself", model),
    ):
        result = generate(model, tokenizer, conversations, sampling, assistant_model=assistant)
        print(
            json.dumps(
                {
                    "setting": name,
                    "tokens_per_second": round(result.tokens_per_second, 1),
                    "speedup": round(result.tokens_per_second / plain.tokens_per_second, 2),
                    "identical": result.texts == plain.texts,
                }
            )
        )


if __name__ == "__main__":
    main()
