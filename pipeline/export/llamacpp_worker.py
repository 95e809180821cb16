"""Run inside llama.cpp's own virtualenv (`make llamacpp-env`), never imported by the pipeline package.

Reads one JSON request on stdin, writes one JSON answer on stdout; imports only the standard library, numpy and
llama_cpp (llama-cpp-python). Operations:
  score:    load a GGUF (optionally with a LoRA GGUF on top) and, for each token-id sequence, the summed negative
            log-likelihood of every next token and llama.cpp's most likely next token; greedy continuations of
            prompts; llama.cpp's own tokenization of texts; the chat template it reads from the file.
  quantize: llama.cpp's quantizer (llama_model_quantize) from an f16/f32 GGUF to a k-quant or legacy type,
            with an importance matrix (tensor name -> mean squared input activation per column) when given.
"""

from __future__ import annotations

import ctypes
import json
import sys
import time
from typing import Any

import llama_cpp
import numpy as np

FTYPES = {
    "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
    "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
    "q5_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M,
    "q6_k": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K,
}


def _quiet_logs() -> None:
    """llama.cpp logs to stderr through this callback; keep only errors (level 4 = GGML_LOG_LEVEL_ERROR)."""

    @llama_cpp.llama_log_callback
    def _log(level: int, text: bytes, _data: Any) -> None:
        if level == 4:
            sys.stderr.write(text.decode("utf-8", "replace"))

    llama_cpp.llama_log_set(_log, ctypes.c_void_p(0))
    _quiet_logs.keep = _log  # type: ignore[attr-defined]  # the C side holds a pointer to it


def _log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def score(request: dict[str, Any]) -> dict[str, Any]:
    """Per-sequence NLL sums and argmax next tokens, greedy continuations, tokenizations and the template."""
    started = time.perf_counter()
    longest = max([len(s) for s in request["sequences"]] + [len(p) for p in request["prompts"]] + [1])
    n_ctx = longest + int(request.get("max_new_tokens", 0)) + 8
    llm = llama_cpp.Llama(
        model_path=request["model"],
        lora_path=request.get("lora"),
        n_ctx=n_ctx,
        n_batch=min(n_ctx, 512),
        logits_all=True,
        n_threads=int(request.get("threads", 2)),
        verbose=False,
    )
    loaded = time.perf_counter() - started
    scored = []
    for ids in request["sequences"]:
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
        logp = _log_softmax_rows(logits)
        targets = np.asarray(ids[1:])
        nll = float(-logp[np.arange(len(targets)), targets].sum())
        scored.append({"nll": nll, "count": len(targets), "argmax": logits.argmax(-1).tolist()})
    greedy = []
    eos = llm.token_eos()
    for prompt in request["prompts"]:
        llm.reset()
        llm.eval(prompt)
        out: list[int] = []
        for _ in range(int(request.get("max_new_tokens", 0))):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            if token == eos:
                break
            out.append(token)
            llm.eval([token])
        greedy.append(out)
    tokenized = [
        llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) for text in request.get("texts", [])
    ]
    return {
        "scored": scored,
        "greedy": greedy,
        "tokenized": tokenized,
        "chat_template": llm.metadata.get("tokenizer.chat_template"),
        "n_vocab": llm.n_vocab(),
        "load_seconds": loaded,
        "seconds": time.perf_counter() - started,
        "llama_cpp": llama_cpp.__version__,
    }


def quantize(request: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp's quantizer: request["source"] -> request["output"] as request["type"]."""
    started = time.perf_counter()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[request["type"]]
    params.nthread = int(request.get("threads", 2))
    keep: list[Any] = []  # the arrays the C structs point into stay alive until the call returns
    imatrix = request.get("imatrix") or {}
    if imatrix:
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for slot, (name, values) in zip(entries, sorted(imatrix.items()), strict=False):
            data = np.ascontiguousarray(values, dtype=np.float32)
            keep += [name.encode(), data]
            slot.name = keep[-2]
            slot.data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            slot.size = data.size
        params.imatrix = entries  # the zeroed last entry (name NULL) ends the list
    code = llama_cpp.llama_model_quantize(
        request["source"].encode(), request["output"].encode(), ctypes.byref(params)
    )
    if code != 0:
        raise RuntimeError(f"llama_model_quantize returned {code}")
    return {"seconds": time.perf_counter() - started, "llama_cpp": llama_cpp.__version__}


def main() -> int:
    """One request from stdin; the answer, or {"error": one line}, on stdout."""
    _quiet_logs()
    request = json.load(sys.stdin)
    try:
        answer = {"score": score, "quantize": quantize}[request["op"]](request)
    except Exception as exc:  # the caller turns this into its one-line error
        answer = {
            "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        }
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
