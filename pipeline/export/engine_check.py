"""Check an exported GGUF with llama.cpp itself (and make the k-quants it checks): perplexity and next-token agreement on the run's eval split
against the merged model in transformers, greedy answers, llama.cpp's own tokenization and chat template."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import AssetError
from pipeline.export.gguf_writer import check_supported
from pipeline.export.kquants import KQUANTS
from pipeline.export.llamacpp import call, find_llamacpp_env, require_llamacpp_env
from pipeline.export.reference import Reference

if TYPE_CHECKING:
    from pipeline.export.gguf_writer import WrittenGguf
    from pipeline.models.artifacts import TargetRef

# Per type: (largest |perplexity ratio - 1| vs the merged fp32 model, smallest share of positions with the same
# most likely next token). Measured by bench/export_quants.py on a 10-step SmolLM2-135M lora-small run (1902
# eval positions, docs/serving.md): f32 0.002 % / 100 %, f16 0.006 % / 99.9 %, bf16 0.05 % / 97.9 %,
# q8_0 0.56 % / 97.7 %, q6_k 0.04 % / 96.2 %, q5_k_m 7.7 % / 85.7 %, q4_k_m 3.6 % / 89.6 %, q4_0 12 % / 83 %;
# without the importance matrix (--no-imatrix) q6_k 1.3 %, q5_k_m 12.8 %, q4_k_m 6.3 %, q4_0 27.9 % / 75.4 %.
# Set so that both pass with headroom (f32/f16/bf16/q8_0 with 2-100x).
TOLERANCE: dict[str, tuple[float, float]] = {
    "f32": (1e-3, 0.99),
    "f16": (5e-3, 0.97),
    "bf16": (1e-2, 0.95),
    "q8_0": (2e-2, 0.93),
    "q6_k": (5e-2, 0.90),
    "q5_k_m": (0.20, 0.75),
    "q4_k_m": (0.15, 0.80),
    "q4_0": (0.35, 0.70),
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


def quantized(model: Any, tokenizer: Any, path: Path, dtype: str, name: str, engine: Engine) -> WrittenGguf:
    """An f16 file by our writer, then llama.cpp's quantizer (with the importance matrix) into path."""
    from pipeline.export.gguf_writer import WrittenGguf, write_gguf
    from pipeline.export.kquants import quantize, tensor_types

    env = engine.env or require_llamacpp_env(f"--dtype {dtype} (llama.cpp's quantizer)")
    source = path.with_name(f".{path.stem}.f16-{os.getpid()}.gguf")
    try:
        base = write_gguf(model, tokenizer, source, "f16", name)
        quantize(env, source, path, dtype, engine.imatrix)
    finally:
        source.unlink(missing_ok=True)
    types = tensor_types(path)
    return WrittenGguf(path, base.architecture, dtype, sum(types.values()), types, path.stat().st_size)


@dataclass
class Engine:
    """llama.cpp's side of an export: its environment, the merged model's scores, the importance matrix."""

    env: Path | None
    reference: Reference | None
    imatrix: dict[str, list[float]] | None = None
    imatrix_tokens: int = 0

    def check(self, path: Path, dtype: str, shown: Path, lora: Path | None = None) -> LlamaCppCheck | None:
        """llama.cpp's verdict on path (None without its environment); a failure raises its one line naming
        shown (the file the user asked for, not its temporary name)."""
        if self.env is None or self.reference is None:
            return None
        verdict = check_gguf(self.env, path, dtype, self.reference, lora)
        require_passed(verdict, shown)
        return verdict


def prepare_engine(model: Any, tokenizer: Any, ref: TargetRef, dtype: str, imatrix: bool) -> Engine:
    """Score the eval split with the merged model and, for a k-quant, measure the importance matrix."""
    from pipeline.export.kquants import IMATRIX_RECORDS, importance_matrix
    from pipeline.export.reference import build_reference, encode, run_records

    env = find_llamacpp_env()
    if env is None:
        return Engine(None, None)
    engine = Engine(env, build_reference(model, tokenizer, ref))
    if dtype in KQUANTS and imatrix:
        sequences = encode(run_records(ref, "train"), tokenizer, IMATRIX_RECORDS)
        if sequences:
            engine.imatrix = importance_matrix(model, sequences, check_supported(model.config, ref.base.name))
            engine.imatrix_tokens = sum(len(s) for s in sequences)
    return engine
