"""`pipeline export`: merge a run, write a GGUF (and an Ollama Modelfile), verify it, write atomically, report."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import AssetError, RecipeError
from pipeline.export.gguf_writer import check_dtype, check_supported
from pipeline.files import atomic_dir, write_json, write_text
from pipeline.models.artifacts import TargetRef, resolve_target
from pipeline.models.heads import refuse_reward_model
from pipeline.runs.record import load_run

if TYPE_CHECKING:
    from pipeline.export.gguf_writer import WrittenGguf
    from pipeline.export.ollama import ChatFormat
    from pipeline.export.verify import GgufCheck

FORMATS = ("gguf", "ollama")
REPORT = "export.json"
MAX_OLLAMA_CONTEXT = 4096  # tokens: Ollama reserves KV cache for num_ctx up front


@dataclass
class ExportResult:
    """Where the export went and how closely the GGUF read back matches the merged model."""

    gguf: Path
    modelfile: Path | None
    report: Path
    dtype: str
    bytes: int
    check: GgufCheck
    chat_format: str | None
    seconds: float


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
    """RUN/export/<name>-<dtype>.gguf (or a <name>-<dtype>-ollama folder); ./export/ for a bare adapter or model."""
    name = (ref.run_dir or ref.adapter_dir or Path(ref.base.name)).name
    root = ref.run_dir / "export" if ref.run_dir is not None else Path.cwd() / "export"
    return root / (f"{name}-{dtype}.gguf" if fmt == "gguf" else f"{name}-{dtype}-ollama")


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


def _write_checked(loaded: list[Any], path: Path, dtype: str, name: str) -> tuple[WrittenGguf, GgufCheck]:
    """Write the GGUF at path and read it back; a failed check is an error (the caller discards path).

    loaded is [model, tokenizer, batch, logits]; the model is dropped from it once written, so the merged
    model and the one read back are never in memory together."""
    from pipeline.export.gguf_writer import write_gguf
    from pipeline.export.verify import failure, verify_gguf

    model, tokenizer, batch, logits = loaded
    written = write_gguf(model, tokenizer, path, dtype, name)
    del model
    loaded[0] = None
    check = verify_gguf(path, dtype, tokenizer, batch, logits)
    if not check.passed:
        raise AssetError(failure(check, path) + " Nothing was kept.")
    return written, check


def _report(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add one export to export.json (one entry per GGUF file name)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        report = {}
    report.setdefault("exports", {})[key] = entry
    write_json(path, report)


def _entry(
    target: str, fmt: str, written: WrittenGguf, check: GgufCheck, merge: dict | None, chat: ChatFormat | None
) -> dict[str, Any]:
    """One export.json entry: what was written and what the read-back check measured."""
    from importlib.metadata import version

    return {
        "target": target,
        "format": fmt,
        "dtype": written.dtype,
        "architecture": written.architecture,
        "bytes": written.bytes,
        "tensor_types": written.tensor_types,
        "check": {
            **asdict(check),
            "passed": check.passed,
            "reader": f"transformers {version('transformers')}",
        },
        "merge_vs_base_plus_adapter": merge,
        "chat_format": chat.family.name if chat else None,
        "writer": f"gguf {version('gguf')}",
    }


def export_run(
    target: str, fmt: str = "gguf", dtype: str = "f16", output: Path | None = None
) -> ExportResult:
    """Export a run (adapter merged), adapter or model to a verified GGUF, plus a Modelfile for `ollama`."""
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
    output = Path(output) if output is not None else default_output(ref, fmt, dtype)
    if fmt == "gguf" and output.suffix != ".gguf":
        raise RecipeError(f"--output {output}: a GGUF file name must end in .gguf.")
    chat, modelfile_text = None, ""
    if fmt == "ollama":  # before any weights load: an unknown template fails in seconds
        tokenizer = load_tokenizer(ref.base, folder=ref.tokenizer_dir)
        chat = detect_format(tokenizer, adds_token(tokenizer, tokenizer.bos_token_id, first=True), target)
        context = min(int(config.max_position_embeddings), MAX_OLLAMA_CONTEXT)
        parameters = {"temperature": 0.7, "top_p": 0.9, "num_ctx": context}
        name = output.name.removesuffix("-ollama")
        modelfile_text = modelfile(f"{name}.gguf", chat, _system_prompt(ref), parameters)
    model, tokenizer, batch, logits, merge = _load(target, ref)
    loaded = [model, tokenizer, batch, logits]
    del model
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "gguf":
        tmp = output.with_name(f".{output.stem}.tmp-{os.getpid()}.gguf")  # transformers reads only *.gguf
        try:
            written, check = _write_checked(loaded, tmp, dtype, output.stem)
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
        gguf_path, modelfile_path, report = output, None, output.with_name(REPORT)
        _report(report, gguf_path.name, _entry(target, fmt, written, check, merge, chat))
    else:
        gguf_path, modelfile_path, report = output / f"{name}.gguf", output / "Modelfile", output / REPORT
        with atomic_dir(output) as folder:
            written, check = _write_checked(loaded, folder / gguf_path.name, dtype, name)
            write_text(folder / modelfile_path.name, modelfile_text)
            _report(folder / REPORT, gguf_path.name, _entry(target, fmt, written, check, merge, chat))
    return ExportResult(
        gguf=gguf_path,
        modelfile=modelfile_path,
        report=report,
        dtype=dtype,
        bytes=written.bytes,
        check=check,
        chat_format=chat.family.name if chat else None,
        seconds=time.perf_counter() - started,
    )
