"""GGUF writer: a tiny Llama / Qwen2 written with gguf's writer, read back by transformers' own GGUF reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import build_tiny_model, build_tiny_tokenizer

from pipeline.errors import AssetError, RecipeError
from pipeline.export.gguf_vocab import CONTROL, NORMAL, UNUSED, read_vocabulary
from pipeline.export.gguf_writer import check_dtype, write_gguf
from pipeline.export.verify import TOLERANCE, read_back, sample_texts, verify_gguf
from pipeline.models.probes import probe_batch, probe_logits


def _export(model: Any, tokenizer: Any, folder: Path, dtype: str) -> tuple[Any, Any]:
    batch = probe_batch(tokenizer)
    reference = probe_logits(model, batch)
    written = write_gguf(model, tokenizer, folder / f"tiny-{dtype}.gguf", dtype, "tiny")
    return written, verify_gguf(written.path, dtype, tokenizer, batch, reference)


def _fields(path: Path) -> dict[str, Any]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {name: field.contents() for name, field in reader.fields.items()}


@pytest.mark.parametrize(
    ("dtype", "kinds"),
    [
        ("f32", {"F32": 21}),
        ("f16", {"F16": 16, "F32": 5}),  # 2-D weights in half precision, the 5 norms stay float32
        ("bf16", {"BF16": 16, "F32": 5}),
        ("q8_0", {"Q8_0": 16, "F32": 5}),
    ],
)
def test_tiny_llama_reads_back_within_tolerance(tmp_path: Path, dtype: str, kinds: dict[str, int]) -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), seed=1)
    written, check = _export(model, tokenizer, tmp_path, dtype)
    assert written.tensor_types == kinds and written.architecture == "llama"
    assert check.passed, check
    assert check.token_ids_match and check.chat_template_match and check.sample_tokens > 50
    assert check.relative_diff <= TOLERANCE[dtype]
    if dtype == "f32":
        assert check.max_abs_diff == 0.0  # same weights, same arithmetic: the layout round-trips exactly
    else:
        assert check.max_abs_diff > 0.0  # rounding is really applied
    sizes = {"f32": 164_000, "f16": 86_176, "bf16": 86_176, "q8_0": 49_696}
    assert written.bytes == pytest.approx(sizes[dtype], rel=0.05)


def test_qk_rows_are_permuted_for_llama_cpp_and_restored_by_the_reader(tmp_path: Path) -> None:
    """The q/k trap: llama.cpp's RoPE pairs neighbouring rows, so the file must hold permuted q/k weights."""
    import gguf

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), seed=2)
    written = write_gguf(model, tokenizer, tmp_path / "tiny.gguf", "f32", "tiny")
    tensors = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(written.path)).tensors}
    q = model.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    v = model.model.layers[0].self_attn.v_proj.weight.detach().numpy()
    assert np.array_equal(tensors["blk.0.attn_v.weight"], v)  # v is stored as is
    assert not np.array_equal(tensors["blk.0.attn_q.weight"], q)
    assert sorted(tensors["blk.0.attn_q.weight"].ravel()) == sorted(q.ravel())  # same values, rows moved
    back, _ = read_back(written.path)
    assert torch.equal(
        back.model.layers[0].self_attn.q_proj.weight, model.model.layers[0].self_attn.q_proj.weight
    )
    assert torch.equal(
        back.model.layers[1].self_attn.k_proj.weight, model.model.layers[1].self_attn.k_proj.weight
    )


def test_metadata_carries_tokenizer_special_ids_and_chat_template(tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer))
    written = write_gguf(model, tokenizer, tmp_path / "tiny.gguf", "f16", "tiny")
    fields = _fields(written.path)
    assert fields["general.architecture"] == "llama" and fields["general.name"] == "tiny"
    assert fields["llama.block_count"] == 2 and fields["llama.embedding_length"] == 32
    assert fields["llama.attention.head_count"] == 4 and fields["llama.attention.head_count_kv"] == 2
    assert fields["llama.rope.dimension_count"] == 8 and fields["llama.vocab_size"] == len(tokenizer)
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.ggml.tokens"] == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert fields["tokenizer.chat_template"] == tokenizer.chat_template
    assert fields["tokenizer.ggml.bos_token_id"] == tokenizer.bos_token_id
    assert fields["tokenizer.ggml.eos_token_id"] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert fields["tokenizer.ggml.padding_token_id"] == tokenizer.convert_tokens_to_ids("<pad>")
    assert fields["tokenizer.ggml.add_bos_token"] is False
    types = fields["tokenizer.ggml.token_type"]
    assert [types[tokenizer.convert_tokens_to_ids(t)] for t in ("<|im_start|>", "<|im_end|>")] == [
        CONTROL
    ] * 2
    assert types[tokenizer.convert_tokens_to_ids("Ġthe")] == NORMAL
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    assert fields["tokenizer.ggml.merges"] == [" ".join(m) for m in merges] and len(merges) > 50


def test_qwen2_with_biases_and_tied_embeddings_round_trips_exactly(tmp_path: Path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(3)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # biases start at zero; make them count
        for layer in model.model.layers:
            layer.self_attn.q_proj.bias.normal_()
            layer.self_attn.k_proj.bias.normal_()
    written, check = _export(model, tokenizer, tmp_path, "f32")
    assert written.architecture == "qwen2" and check.max_abs_diff < 1e-5 and check.passed
    names = {t.name for t in __import__("gguf").GGUFReader(str(written.path)).tensors}
    assert "blk.0.attn_q.bias" in names and "output.weight" not in names  # tied: llama.cpp reuses token_embd


def test_llama3_style_pre_tokenizer_is_named_and_splits_the_same(tmp_path: Path) -> None:
    from tokenizers import Regex, pre_tokenizers
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    tokenizer = build_tiny_tokenizer()
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GGUF_PRE_TOKENIZER_SPLITS["llama-bpe"]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    model = build_tiny_model(len(tokenizer))
    written, check = _export(model, tokenizer, tmp_path, "f16")
    assert _fields(written.path)["tokenizer.ggml.pre"] == "llama-bpe"
    assert check.token_ids_match and check.passed


def test_embedding_rows_beyond_the_tokenizer_get_unused_tokens(tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer()
    vocab = read_vocabulary(tokenizer, len(tokenizer) + 3, "tiny")
    assert vocab.tokens[-3:] == [f"[PAD{len(tokenizer) + i}]" for i in range(3)]
    assert vocab.token_types[-3:] == [UNUSED] * 3
    model = build_tiny_model(len(tokenizer) + 3)
    _, check = _export(model, tokenizer, tmp_path, "f32")
    assert check.passed and check.max_abs_diff == 0.0


def test_unsupported_inputs_are_one_line_errors(tmp_path: Path) -> None:
    from transformers import GPT2Config, LlamaConfig

    from pipeline.export.gguf_writer import check_supported

    with pytest.raises(
        AssetError, match=r"architecture 'gpt2' cannot be exported to GGUF yet; supported: llama, qwen2"
    ):
        check_supported(GPT2Config(), "runs/x")
    scaled = LlamaConfig(rope_scaling={"rope_type": "linear", "factor": 2.0})
    with pytest.raises(AssetError, match="rope scaling 'linear'"):
        check_supported(scaled, "runs/x")
    with pytest.raises(RecipeError, match="--dtype q4_k: not one of f16, bf16, q8_0, f32"):
        check_dtype("q4_k")
    tokenizer = build_tiny_tokenizer()
    json_spec = json.loads(tokenizer.backend_tokenizer.to_str())
    assert json_spec["model"]["type"] == "BPE"
    from tokenizers import pre_tokenizers

    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    with pytest.raises(
        AssetError, match=r"none llama\.cpp knows by name; GGUF export supports byte-level BPE"
    ):
        read_vocabulary(tokenizer, len(tokenizer), "tiny")


def test_sample_texts_cover_specials_digits_and_unicode() -> None:
    tokenizer = build_tiny_tokenizer()
    plain, chat = sample_texts(tokenizer)
    assert "1234567890" in plain and "東京" in plain and "\t" in plain
    assert chat.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>") and chat.endswith("assistant\n")


def test_a_tokenizer_that_adds_bos_says_so_and_reads_back_the_same(tmp_path: Path) -> None:
    """Llama 3 style: the tokenizer's post-processor opens every text with BOS; llama.cpp must do the same."""
    from tokenizers.processors import TemplateProcessing

    tokenizer = build_tiny_tokenizer()
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A", pair="<|im_start|> $A $B", special_tokens=[("<|im_start|>", bos)]
    )
    assert tokenizer("hi")["input_ids"][0] == bos
    written, check = _export(build_tiny_model(len(tokenizer)), tokenizer, tmp_path, "f32")
    assert _fields(written.path)["tokenizer.ggml.add_bos_token"] is True
    assert check.token_ids_match and check.passed
