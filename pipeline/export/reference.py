"""What an exported file is scored against: the run's eval split (token ids) and a few prompts, scored by the
merged float32 model in transformers, before the model leaves memory."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.export.verify import sample_texts

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from pipeline.models.artifacts import TargetRef

MAX_RECORDS = (
    24  # eval records scored: enough positions (~2k) to tell 1% of perplexity apart, seconds on 2 cores
)
MAX_TOKENS = 256  # per record, as rendered for training
GREEDY_PROMPTS = 3
GREEDY_TOKENS = 16
FALLBACK_QUESTIONS = ("What does json.dumps do?", "Explain os.path.join.", "Name a Python module.")


@dataclass
class Reference:
    """Token ids to score, the merged model's scores on them, and its greedy answers."""

    source: str  # where the sequences came from: "eval split (N records)" or "sample texts"
    sequences: list[list[int]]
    prompts: list[list[int]]
    texts: list[str]
    text_ids: list[list[int]]
    chat_template: str | None
    nll: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    argmax: list[list[int]] = field(default_factory=list)
    greedy: list[list[int]] = field(default_factory=list)

    @property
    def perplexity(self) -> float:
        """exp(mean next-token NLL) over every scored position."""
        return math.exp(sum(self.nll) / max(1, sum(self.counts)))


def run_records(ref: TargetRef, split: str) -> list[dict[str, Any]]:
    """The run's records of split ("eval" or "train") as its recipe defines them; [] without a run recipe."""
    from pipeline.data.splits import load_splits
    from pipeline.evaluation.command import eval_recipe, load_eval_records
    from pipeline.runs.record import load_run

    run = load_run(ref.run_dir) if ref.run_dir is not None else None
    if run is None or run.recipe is None or not (run.recipe.get("data") or {}).get("train"):
        return []
    try:
        recipe = eval_recipe(ref, None, None, [])
        return load_eval_records(recipe.data) if split == "eval" else list(load_splits(recipe.data).train)
    except PipelineError as exc:  # data moved or gone since training: the sample texts stand in
        log.warning("The run's %s split cannot be read (%s); scoring the sample texts instead.", split, exc)
        return []


def encode(records: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, limit: int) -> list[list[int]]:
    """Token ids of up to limit records as training rendered them (chat template, EOS), MAX_TOKENS each."""
    from pipeline.data.tokenize import encode_record

    sequences = []
    for record in records:
        if len(sequences) == limit:
            break
        try:
            ids = encode_record(record, tokenizer, MAX_TOKENS, "all")["input_ids"]
        except Exception:  # a record training skipped (data.on_invalid) is skipped here too
            continue
        if len(ids) >= 2:
            sequences.append(list(ids))
    return sequences


def _prompts(records: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    from pipeline.data.formatting import prompt_messages

    conversations = [prompt_messages(r["messages"])[0] for r in records if "messages" in r]
    conversations = [c for c in conversations if c and c[-1]["role"] == "user"][:GREEDY_PROMPTS]
    if not conversations:
        conversations = [[{"role": "user", "content": q}] for q in FALLBACK_QUESTIONS]
    if tokenizer.chat_template is None:
        return [tokenizer(c[-1]["content"], add_special_tokens=False)["input_ids"] for c in conversations]
    rendered = [
        tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations
    ]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in rendered]


def build_reference(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, ref: TargetRef) -> Reference:
    """Score the run's eval split (else the sample texts) and greedy-decode a few prompts with model."""
    records = run_records(ref, "eval")
    sequences = encode(records, tokenizer, MAX_RECORDS)
    texts = sample_texts(tokenizer) if tokenizer.chat_template else sample_texts_plain()
    source = f"eval split ({len(sequences)} records)"
    if not sequences:
        sequences = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        source = "sample texts"
    reference = Reference(
        source=source,
        sequences=sequences,
        prompts=_prompts(records, tokenizer),
        texts=texts,
        text_ids=[tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts],
        chat_template=tokenizer.chat_template,
    )
    _score(model, reference, tokenizer.eos_token_id)
    return reference


def sample_texts_plain() -> list[str]:
    """The sample text alone, for a tokenizer without a chat template."""
    from pipeline.export.verify import SAMPLE_TEXT

    return [SAMPLE_TEXT]


def _score(model: PreTrainedModel, reference: Reference, eos: int | None) -> None:
    import torch

    with torch.inference_mode():
        for ids in reference.sequences:
            logits = model(torch.tensor([ids])).logits[0, :-1].double()
            targets = torch.tensor(ids[1:])
            logp = torch.log_softmax(logits, -1)
            reference.nll.append(float(-logp[torch.arange(len(targets)), targets].sum()))
            reference.counts.append(len(targets))
            reference.argmax.append(logits.argmax(-1).tolist())
        for prompt in reference.prompts:
            reference.greedy.append(greedy(model, prompt, eos))


def greedy(model: PreTrainedModel, prompt: list[int], eos: int | None) -> list[int]:
    """Up to GREEDY_TOKENS greedy tokens after prompt, stopping before EOS (the worker's loop in llama.cpp)."""
    import torch

    ids, out = list(prompt), []
    past = None
    with torch.inference_mode():
        step = torch.tensor([ids])
        for _ in range(GREEDY_TOKENS):
            result = model(step, past_key_values=past, use_cache=True)
            past = result.past_key_values
            token = int(result.logits[0, -1].argmax())
            if token == eos:
                break
            out.append(token)
            step = torch.tensor([[token]])
    return out
