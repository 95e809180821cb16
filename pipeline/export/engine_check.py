"""Check an exported GGUF with llama.cpp itself: perplexity and next-token agreement on the run's eval split
against the merged model in transformers, greedy answers, llama.cpp's own tokenization and chat template."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import AssetError
from pipeline.export.llamacpp import call
from pipeline.export.reference import Reference

# Per type: (largest |perplexity ratio - 1| vs the merged fp32 model, smallest share of positions with the same
# most likely next token). Measured on SmolLM2-135M lora-small exports (docs/serving.md) with headroom.
TOLERANCE: dict[str, tuple[float, float]] = {
    "f32": (1e-3, 0.99),
    "f16": (5e-3, 0.97),
    "bf16": (2e-2, 0.95),
    "q8_0": (2e-2, 0.95),
    "q6_k": (5e-2, 0.90),
    "q5_k_m": (8e-2, 0.85),
    "q4_k_m": (0.15, 0.80),
    "q4_0": (0.25, 0.75),
}


@dataclass
class LlamaCppCheck:
    """How llama.cpp, running the exported file, scores against the merged model in transformers."""

    data: str
    positions: int
    perplexity_reference: float
    perplexity: float
    perplexity_ratio_diff: float  # |perplexity / reference - 1|
    perplexity_tolerance: float
    top1_agreement: float
    top1_minimum: float
    greedy_same: int  # prompts whose greedy answer (token ids) is identical
    greedy_prompts: int
    greedy_answers: list[list[int]]
    token_ids_match: bool  # llama.cpp's tokenizer gives the run's ids on the sample texts
    chat_template_match: bool
    seconds: float
    llama_cpp: str

    @property
    def passed(self) -> bool:
        """Perplexity and agreement within the type's tolerance, same token ids, same template."""
        return (
            self.perplexity_ratio_diff <= self.perplexity_tolerance
            and self.top1_agreement >= self.top1_minimum
            and self.token_ids_match
            and self.chat_template_match
        )

    def record(self) -> dict[str, Any]:
        """The export.json form."""
        return {
            **asdict(self),
            "passed": self.passed,
            "engine": f"llama.cpp (llama-cpp-python {self.llama_cpp})",
        }

    def summary(self) -> str:
        """One line for the terminal."""
        return (
            f"llama.cpp: perplexity {self.perplexity:.3f} vs {self.perplexity_reference:.3f} merged "
            f"({_percent(self.perplexity_ratio_diff)} <= {_percent(self.perplexity_tolerance)}) on the {self.data}, "
            f"same next token at {self.top1_agreement:.1%} of {self.positions} positions, same greedy answer "
            f"for {self.greedy_same}/{self.greedy_prompts} prompts"
        )


def _percent(share: float) -> str:
    return f"{100 * share:.3g}%"


def check_gguf(
    env: Path, path: Path, dtype: str, reference: Reference, lora: Path | None = None
) -> LlamaCppCheck:
    """Load path (with the LoRA GGUF lora on top) in llama.cpp and score it against reference."""
    answer = call(
        env,
        {
            "op": "score",
            "model": str(path),
            "lora": str(lora) if lora is not None else None,
            "sequences": reference.sequences,
            "prompts": reference.prompts,
            "texts": reference.texts,
            "max_new_tokens": max((len(g) for g in reference.greedy), default=0),
        },
        lora or path,
    )
    scored = answer["scored"]
    nll, counts = sum(s["nll"] for s in scored), sum(s["count"] for s in scored)
    same = sum(
        a == b
        for s, ref in zip(scored, reference.argmax, strict=True)
        for a, b in zip(s["argmax"], ref, strict=True)
    )
    greedy = [g[: len(ref)] for g, ref in zip(answer["greedy"], reference.greedy, strict=True)]
    perplexity = math.exp(nll / max(1, counts))
    ppl_tol, top1_min = TOLERANCE[dtype]
    return LlamaCppCheck(
        data=reference.source,
        positions=counts,
        perplexity_reference=reference.perplexity,
        perplexity=perplexity,
        perplexity_ratio_diff=abs(perplexity / reference.perplexity - 1),
        perplexity_tolerance=ppl_tol,
        top1_agreement=same / max(1, counts),
        top1_minimum=top1_min,
        greedy_same=sum(g == r for g, r in zip(greedy, reference.greedy, strict=True)),
        greedy_prompts=len(reference.greedy),
        greedy_answers=answer["greedy"],
        token_ids_match=answer["tokenized"] == reference.text_ids,
        chat_template_match=answer["chat_template"] == reference.chat_template,
        seconds=answer["seconds"],
        llama_cpp=answer["llama_cpp"],
    )


def failure(check: LlamaCppCheck, path: Path) -> str:
    """The one-line reason a llama.cpp check failed."""
    if not check.token_ids_match:
        return f"{path}: llama.cpp's tokenizer gives other token ids than the run's on the sample text."
    if not check.chat_template_match:
        return f"{path}: the chat template llama.cpp reads from the file differs from the run's."
    return (
        f"{path}: run by llama.cpp, perplexity {check.perplexity:.4g} vs {check.perplexity_reference:.4g} merged "
        f"({_percent(check.perplexity_ratio_diff)}, tolerance {_percent(check.perplexity_tolerance)}), same next token at "
        f"{check.top1_agreement:.1%} (minimum {check.top1_minimum:.0%})."
    )


def require_passed(check: LlamaCppCheck, path: Path) -> None:
    """Raise the one-line failure unless check passed."""
    if not check.passed:
        raise AssetError(failure(check, path) + " Nothing was kept.")
