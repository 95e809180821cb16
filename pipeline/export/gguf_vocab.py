"""The tokenizer as GGUF metadata: byte-level BPE vocabulary, merges, token types, special ids, chat template."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import AssetError

if TYPE_CHECKING:
    from gguf import GGUFWriter
    from transformers import PreTrainedTokenizerBase

# llama.cpp's names for the pre-tokenizers we can recognise; each is the split the vocabulary was learned with.
PRE_TOKENIZERS = ("gpt-2", "llama-bpe", "qwen2", "smollm")
# gguf.TokenType values, spelled out so this module imports without gguf.
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5


@dataclass
class Vocabulary:
    """Everything tokenizer.ggml.* and tokenizer.chat_template hold."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int] = field(default_factory=dict)  # bos, eos, unk, pad -> id
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None


def _split_regexes() -> dict[str, str]:
    """The split regex of each pre-tokenizer that carries one, as transformers' GGUF reader rebuilds it."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    return {name: GGUF_PRE_TOKENIZER_SPLITS[name] for name in ("llama-bpe", "qwen2")}


def _pre_tokenizer(pre: dict[str, Any] | None, where: str) -> str:
    """llama.cpp's name for a tokenizer.json pre_tokenizer, or a one-line error naming the known ones."""
    kind = (pre or {}).get("type")
    if kind == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    parts = (pre or {}).get("pretokenizers") or []
    types = [p.get("type") for p in parts]
    if types == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex"):
        return "smollm"
    if types == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        pattern = (parts[0].get("pattern") or {}).get("Regex")
        for name, regex in _split_regexes().items():
            if pattern == regex:
                return name
    raise AssetError(
        f"{where}: the tokenizer's pre-tokenizer ({json.dumps(pre)[:120]}) is none llama.cpp knows by name; "
        f"GGUF export supports byte-level BPE with the {', '.join(PRE_TOKENIZERS)} pre-tokenizers."
    )


def adds_token(tokenizer: PreTrainedTokenizerBase, token_id: int | None, first: bool) -> bool:
    """Whether encoding plain text puts this special token at the start (first) or the end."""
    if token_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    if len(ids) == len(plain):
        return False
    return bool(ids) and ids[0 if first else -1] == token_id


def read_vocabulary(tokenizer: PreTrainedTokenizerBase, vocab_size: int, where: str) -> Vocabulary:
    """The GGUF view of a fast byte-level BPE tokenizer, padded to the model's vocab_size with unused tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    model = spec.get("model") or {}
    decoder = (spec.get("decoder") or {}).get("type")
    if model.get("type") != "BPE" or decoder != "ByteLevel":
        raise AssetError(
            f"{where}: the tokenizer is {model.get('type', 'not a fast tokenizer')} with a {decoder} decoder; "
            "GGUF export supports byte-level BPE tokenizers (Llama 3, Qwen2, SmolLM2)."
        )
    pre = _pre_tokenizer(spec.get("pre_tokenizer"), where)
    count = len(tokenizer)
    if count > vocab_size:
        raise AssetError(
            f"{where}: the tokenizer has {count} tokens but the model only {vocab_size} embedding rows."
        )
    tokens = tokenizer.convert_ids_to_tokens(list(range(count)))
    if any(t is None for t in tokens):
        raise AssetError(
            f"{where}: token ids are not contiguous from 0 to {count - 1}; cannot write a vocabulary."
        )
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items()}
    types = [(CONTROL if added[i].special else USER_DEFINED) if i in added else NORMAL for i in range(count)]
    # Embedding rows beyond the tokenizer (padding to a multiple) still need names in the GGUF vocabulary.
    tokens += [f"[PAD{i}]" for i in range(count, vocab_size)]
    types += [UNUSED] * (vocab_size - count)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    special_ids = {
        name: token_id
        for name in ("bos", "eos", "unk", "pad")
        if (token_id := getattr(tokenizer, f"{name}_token_id", None)) is not None
    }
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    return Vocabulary(
        tokens=tokens,
        token_types=types,
        merges=merges,
        pre=pre,
        special_ids=special_ids,
        add_bos=adds_token(tokenizer, special_ids.get("bos"), first=True),
        add_eos=adds_token(tokenizer, special_ids.get("eos"), first=False),
        chat_template=template,
    )


def add_vocabulary(writer: GGUFWriter, vocab: Vocabulary) -> None:
    """Write the tokenizer.ggml.* keys and the chat template."""
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    adders = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "unk": writer.add_unk_token_id,
        "pad": writer.add_pad_token_id,
    }
    for name, token_id in vocab.special_ids.items():
        adders[name](token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)
