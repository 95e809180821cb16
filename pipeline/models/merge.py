"""`pipeline merge`: fold an adapter into its base and write a standalone, verified model folder."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import ModelSpec
from pipeline.errors import AssetError, RecipeError
from pipeline.files import atomic_dir, write_json
from pipeline.models.artifacts import TargetRef, resolve_target
from pipeline.models.probes import compare_logits, probe_batch, probe_logits

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class MergeResult:
    """Where the merged model went and how closely it matches base + adapter."""

    output: Path
    dtype: str
    dequantized_from: str | None
    max_abs_diff: float
    relative_diff: float
    relative_tolerance: float
    reload_max_abs_diff: float  # reloaded folder vs the fp32 merge: rounding to dtype, exactly 0 for float32
    seconds: float


def default_output(ref: TargetRef) -> Path:
    """RUN/merged for a run folder, ADAPTER-merged beside a bare adapter folder."""
    if ref.run_dir is not None:
        return ref.run_dir / "merged"
    assert ref.adapter_dir is not None
    return ref.adapter_dir.with_name(f"{ref.adapter_dir.name}-merged")


def _base(ref: TargetRef, tokenizer: PreTrainedTokenizerBase, fp32: bool) -> PreTrainedModel:
    """The base as trained (fp32 on request), its embeddings grown to the adapter's tokenizer if needed."""
    from pipeline.models.loading import load_base_model, resize_embeddings

    model = load_base_model(ref.base.model_copy(update={"dtype": "float32"}) if fp32 else ref.base)
    resize_embeddings(model, len(tokenizer))  # bare adapter folders name no added tokens in a recipe
    return model


def _reference_and_merge(
    ref: TargetRef, tokenizer: PreTrainedTokenizerBase, batch: dict[str, Any], fp32: bool = False
) -> tuple:
    """Logits of base + adapter exactly as trained (quantized base included), and the fp32 merged model.

    fp32: the reference runs the unquantized base in float32 too, so only the merge arithmetic is compared."""
    import torch

    from pipeline.models.heads import attach_adapter

    trained = attach_adapter(_base(ref, tokenizer, fp32=fp32), ref.adapter_dir)
    reference = probe_logits(trained, batch)
    if fp32:
        return reference, trained.merge_and_unload()
    if ref.base.quantization != "none":
        # De-quantize the very weights training saw (not the original checkpoint), then merge in fp32;
        # reusing the loaded base also skips a second (slow, on CPU) quantization.
        base = trained.unload().dequantize(dtype=torch.float32)
    else:
        del trained
        base = _base(ref, tokenizer, fp32=True)
    return reference, attach_adapter(base, ref.adapter_dir).merge_and_unload()


def _full_model(ref: TargetRef) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(ref.base.name, dtype="float32", use_safetensors=True)


def _target_dtype(base: ModelSpec, dtype: str) -> Any:
    from pipeline.models.precision import resolve_dtype

    if dtype not in DTYPES:
        raise RecipeError(f"--dtype {dtype}: not one of {', '.join(DTYPES)}.")
    return resolve_dtype(base.dtype if dtype == "auto" else dtype)


def _differing_weights(saved: PreTrainedModel, reloaded: PreTrainedModel) -> list[str]:
    """Names of weights that differ between the model that was saved and the one plain transformers reloads."""
    import torch

    mine, theirs = saved.state_dict(), reloaded.state_dict()
    names = sorted(set(mine) | set(theirs))
    return [
        n
        for n in names
        if n not in mine or n not in theirs or not torch.equal(mine[n], theirs[n].to(mine[n].device))
    ]


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@dataclass
class MergedModel:
    """A target's adapter folded into its fp32 base, in memory, with the logits that checked it."""

    ref: TargetRef
    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    batch: dict[str, Any]
    logits: Any  # the merged model's probe logits (float32, padded positions dropped)
    match: dict[str, Any]  # compare_logits of base + adapter vs the merge
    tolerance: float


def merge_in_memory(
    target: str, tolerance: float | None = None, output: Path | None = None, fp32_reference: bool = False
) -> MergedModel:
    """Fold a run's (or adapter folder's) adapter into its fp32 base and check the logits against base + adapter
    (as trained, or in float32 with fp32_reference: a bf16 run's own rounding is then not part of the check)."""
    from pipeline.models.loading import load_tokenizer
    from pipeline.models.precision import resolve_dtype

    ref = resolve_target(target)
    if ref.kind == "model":
        raise AssetError(f"{target}: already a full model with no adapter; there is nothing to merge.")
    tokenizer = load_tokenizer(ref.base, folder=ref.tokenizer_dir)
    batch = probe_batch(tokenizer, list(ref.base.add_special_tokens))
    if ref.adapter_dir is None:  # full fine-tuning: the run already holds the whole model
        merged = _full_model(ref)
        reference = probe_logits(merged, batch)
    else:
        exact = fp32_reference and ref.base.quantization == "none"
        reference, merged = _reference_and_merge(ref, tokenizer, batch, fp32=exact)
    trained_dtype = str(resolve_dtype(ref.base.dtype)).removeprefix("torch.")
    if fp32_reference and ref.base.quantization == "none":
        trained_dtype = "float32"
    merged_logits = probe_logits(merged, batch)
    match = compare_logits(reference, merged_logits, trained_dtype)
    limit = tolerance if tolerance is not None else match["relative_tolerance"]
    if not match.get("relative_diff", float("inf")) <= limit:
        diff, relative = match.get("max_abs_diff", float("nan")), match.get("relative_diff", float("nan"))
        raise AssetError(
            f"{target}: the merged model's logits differ from base + adapter by {diff:.3g} "
            f"(relative {relative:.2g}, tolerance {limit:.2g}); nothing was written"
            f"{f' to {output}' if output is not None else ''}."
        )
    return MergedModel(ref, tokenizer, merged, batch, merged_logits, match, limit)


def merge_run(
    target: str, output: Path | None = None, dtype: str = "auto", tolerance: float | None = None
) -> MergeResult:
    """Merge a run's (or an adapter folder's) adapter into its base, verify the logits, write atomically."""
    from pipeline.models.heads import auto_class_for

    started = time.perf_counter()
    ref = resolve_target(target)
    if ref.kind == "model":
        raise AssetError(f"{target}: already a full model with no adapter; there is nothing to merge.")
    torch_dtype = _target_dtype(ref.base, dtype)
    output = Path(output) if output is not None else default_output(ref)
    # The check is of the merge arithmetic: base + adapter in float32 against the fp32 merge. A bf16 run's own
    # rounding (0.06 relative on SmolLM2) is no merge error, and the saved dtype is rounded again anyway.
    done = merge_in_memory(target, tolerance, output, fp32_reference=True)
    tokenizer, merged, batch, merged_logits = done.tokenizer, done.model, done.batch, done.logits
    match, limit = done.match, done.tolerance
    del done  # `del merged` below must free the model
    saved_dtype = str(torch_dtype).removeprefix("torch.")
    merged = merged.to(torch_dtype)
    with atomic_dir(output) as tmp:
        _save(merged, tokenizer, tmp)
        reloaded = auto_class_for(tmp).from_pretrained(str(tmp), dtype=torch_dtype, use_safetensors=True)
        changed = _differing_weights(merged, reloaded)
        if changed:
            raise AssetError(
                f"{output}: {len(changed)} weights (e.g. {changed[0]}) do not reload as saved; not kept."
            )
        del merged
        # Rounding to a half-precision dtype moves logits legitimately; only fp32 must reproduce the merge.
        reload = compare_logits(merged_logits, probe_logits(reloaded, batch), "float32")
        del reloaded
        if saved_dtype == "float32" and not reload["passed"]:
            raise AssetError(
                f"{output}: the written model reloads with logits {reload['max_abs_diff']:.3g} off; not kept."
            )
    result = MergeResult(
        output=output,
        dtype=saved_dtype,
        dequantized_from=ref.base.quantization if ref.base.quantization != "none" else None,
        max_abs_diff=match["max_abs_diff"],
        relative_diff=match["relative_diff"],
        relative_tolerance=limit,
        reload_max_abs_diff=reload["max_abs_diff"],
        seconds=time.perf_counter() - started,
    )
    if ref.run_dir is not None:
        write_json(ref.run_dir / "merge.json", {**asdict(result), "output": str(output)})
    return result
