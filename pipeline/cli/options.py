"""Command-line options shared by `pipeline generate`, `chat` and `serve` (typer only, nothing heavy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from pipeline.inference.generation import Sampling

Target = Annotated[
    str,
    typer.Argument(help="Run folder (runs/<recipe>-<time>), adapter folder or Hub id, merged or base model."),
]
System = Annotated[
    str | None, typer.Option("--system", "-s", help="System prompt put before every conversation.")
]
Greedy = Annotated[
    bool, typer.Option("--greedy", help="Pick the most likely token each step (temperature 0).")
]
Temperature = Annotated[float, typer.Option(min=0.0, help="Sampling temperature; 0 = greedy.")]
TopP = Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling: keep this mass.")]
TopK = Annotated[int, typer.Option("--top-k", min=0, help="Keep the k most likely tokens; 0 = off.")]
MinP = Annotated[float, typer.Option("--min-p", min=0.0, max=1.0, help="Drop tokens below min_p x top prob.")]
RepetitionPenalty = Annotated[
    float, typer.Option("--repetition-penalty", min=0.01, help="> 1 discourages repeats.")
]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", "-m", min=1, help="Most tokens per answer.")]
Seed = Annotated[int | None, typer.Option(help="Random seed: the same seed gives the same samples.")]
Stop = Annotated[
    list[str] | None, typer.Option("--stop", help="Stop string (repeatable); not part of the answer.")
]
Samples = Annotated[int, typer.Option("--n", "-n", min=1, help="Number of samples per prompt.")]
Assistant = Annotated[
    str | None,
    typer.Option(
        help="Smaller model (same tokenizer family) for assisted/speculative decoding; greedy output "
        "is unchanged."
    ),
]
Dtype = Annotated[str | None, typer.Option(help="float32, bfloat16 or float16; default: the recipe's dtype.")]
Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")]


def sampling(
    greedy: bool,
    temperature: float,
    top_p: float,
    top_k: int,
    min_p: float,
    repetition_penalty: float,
    max_new_tokens: int,
    seed: int | None,
    stop: list[str] | None,
    n: int = 1,
) -> Sampling:
    """A generation.Sampling from command-line values (--greedy forces temperature 0)."""
    from pipeline.inference.generation import Sampling

    return Sampling(
        max_new_tokens=max_new_tokens,
        temperature=0.0 if greedy else temperature,
        top_p=top_p,
        top_k=top_k,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
        stop=tuple(stop or ()),
        n=n,
    )


OVERRIDES_HELP = "Dotted overrides such as train.max_steps=2 adapter.r=8."
