"""Assistant loss masks on real chat-template styles (ChatML, Llama-3, Mistral [INST], Gemma, Phi-3, Qwen).

The templates are the files shipped in recipes/templates/, put into tiny tokenizers that carry each
style's special tokens. For each style the trained tokens must be exactly every assistant turn plus
its end-of-turn token, and nothing of the system or user turns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import CONVERSATIONS, build_tiny_tokenizer

from pipeline.data.audit import check_example, special_ids
from pipeline.data.formatting import TemplateMismatch, tokenize_conversation

TEMPLATES = Path(__file__).resolve().parents[3] / "recipes" / "templates"
# style: (bos, eos, other special tokens, what closes an assistant turn in the rendering)
STYLES: dict[str, tuple[str, str, list[str], str]] = {
    "chatml": ("<|im_start|>", "<|im_end|>", [], "<|im_end|>\n"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>", ["<|start_header_id|>", "<|end_header_id|>"], "<|eot_id|>"),
    "mistral": ("<s>", "</s>", [], "</s>"),
    "gemma": ("<bos>", "<eos>", ["<start_of_turn>", "<end_of_turn>"], "<end_of_turn>\n"),
    "phi3": ("<s>", "<|endoftext|>", ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], "<|end|>\n"),
    "qwen": ("<|im_start|>", "<|im_end|>", [], "<|im_end|>\n"),
}
TWO_TURNS = CONVERSATIONS[1]  # user, assistant, user, assistant


def template_tokenizer(style: str) -> Any:
    """The tiny BPE tokenizer with a style's template file and special tokens."""
    bos, eos, others, _ = STYLES[style]
    tokenizer = build_tiny_tokenizer((TEMPLATES / f"{style}.jinja").read_text(encoding="utf-8"))
    tokenizer.add_special_tokens({"bos_token": bos, "eos_token": eos, "additional_special_tokens": others})
    return tokenizer


def trained_runs(tokenizer: Any, row: dict[str, Any]) -> list[str]:
    """The decoded text of each maximal run of trained tokens."""
    runs: list[list[int]] = []
    previous = 0
    for token, bit in zip(row["input_ids"], row["assistant_masks"], strict=True):
        if bit and not previous:
            runs.append([])
        if bit:
            runs[-1].append(token)
        previous = bit
    return [tokenizer.decode(run) for run in runs]


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_assistant_turn_and_its_end_token_are_trained(style: str) -> None:
    tokenizer = template_tokenizer(style)
    closing = STYLES[style][3]
    row = tokenize_conversation(tokenizer, TWO_TURNS, max_length=512)
    runs = trained_runs(tokenizer, row)
    if style == "phi3":  # Phi-3 closes a finished conversation with EOS after the last turn: trained too
        assert runs == [f"It joins path segments.{closing}", f"The os.path module.{closing}<|endoftext|>"]
    else:
        assert runs == [f"It joins path segments.{closing}", f"The os.path module.{closing}"]
    trained_ids = {t for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True) if m}
    end_of_turn = tokenizer.convert_tokens_to_ids(closing.strip())
    assert end_of_turn in trained_ids
    check_example({**row, "location": style}, tokenizer, special_ids(tokenizer))


@pytest.mark.parametrize("style", sorted(STYLES))
def test_no_prompt_token_is_trained(style: str) -> None:
    tokenizer = template_tokenizer(style)
    row = tokenize_conversation(tokenizer, TWO_TURNS, max_length=512)
    untrained = tokenizer.decode(
        [t for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True) if not m]
    )
    assert "Explain os.path.join." in untrained and "Which module?" in untrained
    trained = "".join(trained_runs(tokenizer, row))
    assert "Explain" not in trained and "Which module" not in trained and "user" not in trained


@pytest.mark.parametrize("style", ["chatml", "llama3", "phi3", "qwen"])
def test_system_turn_is_not_trained(style: str) -> None:
    tokenizer = template_tokenizer(style)
    row = tokenize_conversation(tokenizer, CONVERSATIONS[2], max_length=512)
    assert "".join(trained_runs(tokenizer, row)).startswith("Fine, thank you.")
    assert "Answer briefly" not in "".join(trained_runs(tokenizer, row))


def test_role_order_the_template_rejects_is_a_clear_error() -> None:
    with pytest.raises(
        TemplateMismatch, match=r"cannot render this conversation.*Conversation roles must alternate"
    ):
        tokenize_conversation(template_tokenizer("mistral"), CONVERSATIONS[2], max_length=512)


def test_gemma_folds_the_system_turn_into_the_first_user_turn_untrained() -> None:
    tokenizer = template_tokenizer("gemma")
    row = tokenize_conversation(tokenizer, CONVERSATIONS[2], max_length=512)
    text = tokenizer.decode(row["input_ids"])
    assert text == (
        "<bos><start_of_turn>user\nAnswer briefly.\n\nHello, how are you?<end_of_turn>\n"
        "<start_of_turn>model\nFine, thank you.<end_of_turn>\n"
    )
    assert trained_runs(tokenizer, row) == ["Fine, thank you.<end_of_turn>\n"]


def test_loss_on_completion_trains_only_the_last_turn_and_all_trains_everything() -> None:
    tokenizer = template_tokenizer("chatml")
    last = tokenize_conversation(tokenizer, TWO_TURNS, max_length=512, loss_on="completion")
    assert trained_runs(tokenizer, last) == ["The os.path module.<|im_end|>\n"]
    everything = tokenize_conversation(tokenizer, TWO_TURNS, max_length=512, loss_on="all")
    assert all(everything["assistant_masks"]) and len(everything["input_ids"]) == len(last["input_ids"])


def test_prompt_turns_are_never_trained() -> None:
    tokenizer = template_tokenizer("chatml")
    row = tokenize_conversation(tokenizer, TWO_TURNS, max_length=512, prompt_turns=2)
    assert trained_runs(tokenizer, row) == ["The os.path module.<|im_end|>\n"]


def test_truncation_keeps_the_mask_aligned_and_counts_lost_tokens() -> None:
    tokenizer = template_tokenizer("chatml")
    full = tokenize_conversation(tokenizer, TWO_TURNS, max_length=512)
    cut = tokenize_conversation(tokenizer, TWO_TURNS, max_length=len(full["input_ids"]) - 5)
    assert (
        cut["input_ids"] == full["input_ids"][:-5] and cut["assistant_masks"] == full["assistant_masks"][:-5]
    )
    assert cut["num_tokens"] == full["num_tokens"] and cut["num_trained"] == full["num_trained"]
    assert sum(full["assistant_masks"]) - sum(cut["assistant_masks"]) == 5  # the last 5 tokens were trained
