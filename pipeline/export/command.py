"""`pipeline export`: merge a run, write a GGUF (and an Ollama Modelfile), verify it, write atomically, report.

Verified twice where it can be: transformers' GGUF reader (the types our writer makes) and llama.cpp itself
(every type, k-quants and LoRA GGUFs included) when its environment is built (`make llamacpp-env`)."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import AssetError, RecipeError
from pipeline.export.engine_check import Engine, prepare_engine, quantized
from pipeline.export.gguf_writer import GGUF_DTYPES, check_supported
from pipeline.export.kquants import KQUANTS
from pipeline.export.llamacpp import missing_env_line, require_llamacpp_env
from pipeline.files import atomic_dir, write_json, write_text
from pipeline.models.artifacts import TargetRef, resolve_target
from pipeline.models.heads import refuse_reward_model
from pipeline.runs.record import load_run

if TYPE_CHECKING:
    from pipeline.export.engine_check import LlamaCppCheck
    from pipeline.export.gguf_writer import WrittenGguf
    from pipeline.export.ollama import ChatFormat
    from pipeline.export.verify import GgufCheck

FORMATS = ("gguf", "ollama", "gguf-lora")
DTYPES = (*GGUF_DTYPES, *KQUANTS)
REPORT = "export.json"
MAX_OLLAMA_CONTEXT = 4096  # tokens: Ollama reserves KV cache for num_ctx up front
log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """Where the export went and how closely the GGUF read back matches the merged model."""

    gguf: Path
    modelfile: Path | None
    report: Path
    dtype: str
    bytes: int
    check: GgufCheck | None  # transformers' reader: None for k-quants and LoRA GGUFs, which it does not read
    engine: LlamaCppCheck | None  # llama.cpp: None when its environment is absent
    chat_format: str | None
    seconds: float
    adapter: Path | None = None  # --format gguf-lora: the adapter GGUF (gguf is then the base it applies to)


def _config(ref: TargetRef) -> Any:
    from transformers import AutoConfig

    from pipeline.models.assets import resolve_model

    folder = resolve_model(ref.base.name, ref.base.revision)
    return AutoConfig.from_pretrained(str(folder), trust_remote_code=ref.base.trust_remote_code)


def _system_prompt(ref: TargetRef) -> str | None:
    """The recipe's data.system_prompt, which training put in front of conversations without one."""
    run = load_run(ref.run_dir) if ref.run_dir is not None else None
    return run.system_prompt() if run is not None else None


def default_output(ref: TargetRef, fmt: str, dtype: str) -> Path:
    """RUN/export/<name>-<dtype>.gguf (or a <name>-<dtype>-ollama / -lora folder); ./export/ for a bare adapter or
    model."""
    name = (ref.run_dir or ref.adapter_dir or Path(ref.base.name)).name
    root = ref.run_dir / "export" if ref.run_dir is not None else Path.cwd() / "export"
    suffix = {"gguf": ".gguf", "ollama": "-ollama", "gguf-lora": "-lora"}[fmt]
    return root / f"{name}-{dtype}{suffix}"


def check_dtype(dtype: str) -> str:
    """The --dtype, or a one-line error naming the choices."""
    if dtype not in DTYPES:
        raise RecipeError(f"--dtype {dtype}: not one of {', '.join(DTYPES)}.")
    return dtype


def _load(target: str, ref: TargetRef) -> tuple[Any, Any, dict[str, Any], Any, dict[str, Any] | None]:
    """(fp32 model, tokenizer, probe batch, its logits, merge check) for a run, adapter or plain model."""
    if ref.kind != "model":
        from pipeline.models.merge import merge_in_memory

        merged = merge_in_memory(target, fp32_reference=True)  # the GGUF is compared with this fp32 merge
        return merged.model, merged.tokenizer, merged.batch, merged.logits, merged.match
    from transformers import AutoModelForCausalLM

    from pipeline.models.assets import resolve_model
    from pipeline.models.loading import load_tokenizer
    from pipeline.models.probes import probe_batch, probe_logits

    tokenizer = load_tokenizer(ref.base, folder=ref.tokenizer_dir)
    folder = resolve_model(ref.base.name, ref.base.revision)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype="float32", use_safetensors=True).eval()
    batch = probe_batch(tokenizer)
    return model, tokenizer, batch, probe_logits(model, batch), None


def _write_checked(
    loaded: list[Any], path: Path, dtype: str, name: str, engine: Engine, shown: Path
) -> tuple[WrittenGguf, GgufCheck | None, LlamaCppCheck | None]:
    """Write the GGUF at path and verify it; a failed check is an error (the caller discards path).

    loaded is [model, tokenizer, batch, logits]; the model is dropped from it once written, so the merged
    model and the one read back are never in memory together. k-quants are made by llama.cpp's quantizer
    from an f16 file written beside path (removed after)."""
    from pipeline.export.gguf_writer import write_gguf
    from pipeline.export.verify import failure, verify_gguf

    model, tokenizer, batch, logits = loaded
    if dtype in KQUANTS:
        written = quantized(model, tokenizer, path, dtype, name, engine)
        del model
        loaded[0] = None
        return written, None, engine.check(path, dtype, shown)
    written = write_gguf(model, tokenizer, path, dtype, name)
    del model
    loaded[0] = None
    check = verify_gguf(path, dtype, tokenizer, batch, logits)
    if not check.passed:
        raise AssetError(failure(check, shown) + " Nothing was kept.")
    return written, check, engine.check(path, dtype, shown)


def _report(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add one export to export.json (one entry per GGUF file name)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        report = {}
    report.setdefault("exports", {})[key] = entry
    write_json(path, report)


def _entry(
    target: str,
    fmt: str,
    written: WrittenGguf,
    checks: tuple[GgufCheck | None, LlamaCppCheck | None],
    engine: Engine,
    merge: dict | None,
    chat: ChatFormat | None,
) -> dict[str, Any]:
    """One export.json entry: what was written and what transformers' reader and llama.cpp measured."""
    from importlib.metadata import version

    check, verdict = checks
    return {
        "target": target,
        "format": fmt,
        "dtype": written.dtype,
        "architecture": written.architecture,
        "bytes": written.bytes,
        "tensor_types": written.tensor_types,
        "check": None
        if check is None
        else {**asdict(check), "passed": check.passed, "reader": f"transformers {version('transformers')}"},
        "llama_cpp": verdict.record() if verdict is not None else {"skipped": missing_env_line()},
        "imatrix_tokens": engine.imatrix_tokens if engine.imatrix else None,
        "merge_vs_base_plus_adapter": merge,
        "chat_format": chat.family.name if chat else None,
        "writer": f"gguf {version('gguf')}",
    }


def export_run(
    target: str, fmt: str = "gguf", dtype: str = "f16", output: Path | None = None, imatrix: bool = True
) -> ExportResult:
    """Export a run (adapter merged), adapter or model to a verified GGUF, plus a Modelfile for `ollama`;
    `gguf-lora`: the base GGUF and the adapter alone as a llama.cpp LoRA GGUF, with a Modelfile (ADAPTER)."""
    from pipeline.export.gguf_vocab import adds_token
    from pipeline.export.ollama import detect_format, modelfile
    from pipeline.models.loading import load_tokenizer

    started = time.perf_counter()
    if fmt not in FORMATS:
        raise RecipeError(f"--format {fmt}: not one of {', '.join(FORMATS)}.")
    check_dtype(dtype)
    ref = resolve_target(target)
    refuse_reward_model(ref.adapter_dir, ref.tokenizer_dir, target, "be exported for llama.cpp or Ollama")
    config = _config(ref)
    check_supported(config, target)
    if dtype in KQUANTS:
        require_llamacpp_env(f"--dtype {dtype} (llama.cpp's quantizer)")
    if fmt == "gguf-lora":
        _check_lora_target(ref, target)
    output = Path(output) if output is not None else default_output(ref, fmt, dtype)
    if fmt == "gguf" and output.suffix != ".gguf":
        raise RecipeError(f"--output {output}: a GGUF file name must end in .gguf.")
    chat, name = None, output.name.removesuffix("-ollama").removesuffix("-lora")
    if fmt != "gguf":  # before any weights load: an unknown template fails in seconds
        tokenizer = load_tokenizer(ref.base, folder=ref.tokenizer_dir)
        chat = detect_format(tokenizer, adds_token(tokenizer, tokenizer.bos_token_id, first=True), target)
    model, tokenizer, batch, logits, merge = _load(target, ref)
    engine = prepare_engine(model, tokenizer, ref, dtype, imatrix)
    if engine.env is None:
        log.warning(
            "llama.cpp check skipped: %s; transformers' GGUF reader checks the file.", missing_env_line()
        )
    loaded = [model, tokenizer, batch, logits]
    del model
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "gguf-lora":
        return _export_lora(target, ref, config, loaded, output, dtype, engine, (merge, chat), started)
    if fmt == "gguf":
        tmp = output.with_name(f".{output.stem}.tmp-{os.getpid()}.gguf")  # transformers reads only *.gguf
        try:
            written, check, verdict = _write_checked(loaded, tmp, dtype, output.stem, engine, output)
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
        gguf_path, modelfile_path, report = output, None, output.with_name(REPORT)
        _report(report, gguf_path.name, _entry(target, fmt, written, (check, verdict), engine, merge, chat))
    else:
        assert chat is not None
        gguf_path, modelfile_path, report = output / f"{name}.gguf", output / "Modelfile", output / REPORT
        text = modelfile(f"{name}.gguf", chat, _system_prompt(ref), _parameters(config))
        with atomic_dir(output) as folder:
            written, check, verdict = _write_checked(
                loaded, folder / gguf_path.name, dtype, name, engine, gguf_path
            )
            write_text(folder / modelfile_path.name, text)
            entry = _entry(target, fmt, written, (check, verdict), engine, merge, chat)
            _report(folder / REPORT, gguf_path.name, entry)
    return ExportResult(
        gguf=gguf_path,
        modelfile=modelfile_path,
        report=report,
        dtype=dtype,
        bytes=written.bytes,
        check=check,
        engine=verdict,
        chat_format=chat.family.name if chat else None,
        seconds=time.perf_counter() - started,
    )


def _parameters(config: Any) -> dict[str, Any]:
    context = min(int(config.max_position_embeddings), MAX_OLLAMA_CONTEXT)
    return {"temperature": 0.7, "top_p": 0.9, "num_ctx": context}


def _check_lora_target(ref: TargetRef, target: str) -> None:
    """--format gguf-lora needs a LoRA adapter llama.cpp can carry, and llama.cpp to check it applied."""
    from pipeline.export.gguf_lora import adapter_problems

    if ref.adapter_dir is None or not (ref.adapter_dir / "adapter_config.json").is_file():
        raise RecipeError(
            f"--format gguf-lora: {target} has no LoRA adapter (a model or a full fine-tune); use --format gguf."
        )
    problems = adapter_problems(
        json.loads((ref.adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    )
    if problems:
        raise AssetError(
            f"{ref.adapter_dir}: llama.cpp's LoRA GGUF cannot carry {'; '.join(problems)}; "
            "export the merged model instead (--format gguf)."
        )
    require_llamacpp_env("--format gguf-lora (llama.cpp applies the adapter to check it)")


def _export_lora(
    target: str,
    ref: TargetRef,
    config: Any,
    loaded: list[Any],
    output: Path,
    dtype: str,
    engine: Engine,
    merge_chat: tuple[dict | None, ChatFormat | None],
    started: float,
) -> ExportResult:
    """The base GGUF (in dtype) and the adapter alone as a LoRA GGUF, checked applied by llama.cpp against the
    merged model; a Modelfile with FROM base and ADAPTER; all in one folder written atomically."""
    from transformers import AutoModelForCausalLM

    from pipeline.export.gguf_lora import write_lora_gguf
    from pipeline.export.gguf_writer import write_gguf
    from pipeline.export.ollama import modelfile
    from pipeline.models.assets import resolve_model

    merge, chat = merge_chat
    assert chat is not None and ref.adapter_dir is not None
    tokenizer = loaded[1]
    loaded[0] = None  # the merged model's scores are in engine.reference; the base goes into the file
    name = (ref.run_dir or ref.adapter_dir).name
    base_name = f"{Path(ref.base.name).name}-{dtype}.gguf"
    adapter_name = f"{name}-lora.gguf"
    folder_model = resolve_model(ref.base.name, ref.base.revision)
    base = AutoModelForCausalLM.from_pretrained(
        str(folder_model), dtype="float32", use_safetensors=True
    ).eval()
    text = modelfile(base_name, chat, _system_prompt(ref), _parameters(config), adapter=adapter_name)
    with atomic_dir(output) as folder:
        if dtype in KQUANTS:
            written_base = quantized(base, tokenizer, folder / base_name, dtype, Path(base_name).stem, engine)
        else:
            written_base = write_gguf(base, tokenizer, folder / base_name, dtype, Path(base_name).stem)
        del base
        written = write_lora_gguf(ref.adapter_dir, config, folder / adapter_name, dtype, name)
        verdict = engine.check(folder / base_name, dtype, output / adapter_name, lora=folder / adapter_name)
        write_text(folder / "Modelfile", text)
        entry = _entry(target, "gguf-lora", written, (None, verdict), engine, merge, chat)
        entry.update(
            base=base_name, base_bytes=written_base.bytes, base_tensor_types=written_base.tensor_types
        )
        _report(folder / REPORT, adapter_name, entry)
    return ExportResult(
        gguf=output / base_name,
        modelfile=output / "Modelfile",
        report=output / REPORT,
        dtype=dtype,
        bytes=written.bytes,
        check=None,
        engine=verdict,
        chat_format=chat.family.name,
        seconds=time.perf_counter() - started,
        adapter=output / adapter_name,
    )
