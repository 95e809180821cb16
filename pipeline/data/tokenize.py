"""Records -> token ids and loss masks: one record (encode_record) or a whole split as a cached Dataset."""

from __future__ import annotations

import atexit
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.data.encode import encode_split
from pipeline.data.formatting import tokenize_conversation, tokenize_text
from pipeline.data.splits import invalid_record
from pipeline.data.template_checks import recipe_error
from pipeline.data.workers import default_num_proc
from pipeline.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from pipeline.config.schema import TrainSpec

log = logging.getLogger(__name__)


def encode_record(
    record: dict[str, Any], tokenizer: PreTrainedTokenizerBase, max_length: int, loss_on: str
) -> dict[str, Any]:
    """input_ids, assistant_masks, num_tokens and num_trained of one record (raises TemplateMismatch)."""
    if "text" in record:
        return tokenize_text(tokenizer, record["text"], max_length)
    return tokenize_conversation(
        tokenizer, record["messages"], max_length, loss_on, record.get("prompt_turns", 0), record.get("tools")
    )


def settle_failures(
    records: list[dict[str, Any]],
    failures: list[tuple[int, str]],
    tokenizer: PreTrainedTokenizerBase,
    on_invalid: str,
    skipped: dict[str, int],
    verdicts: dict[str, str | None] | None = None,
) -> None:
    """Apply data.on_invalid to the records the template could not render ((index, message) in record order):
    stop at the first one's location, or count them into skipped. A template that fails every record of a
    kind raises RecipeError naming the setting instead; verdicts remembers which kinds it renders."""
    verdicts = {} if verdicts is None else verdicts
    for index, message in failures:
        # A template that fails every record is the recipe's doing: name the setting, not train.jsonl:1.
        error = recipe_error(tokenizer, records[index], verdicts)
        if error is not None:
            raise error from None
        invalid_record(on_invalid, records[index].get("location", "record"), message, skipped)


def _build(
    records: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    options: dict[str, Any],
    desc: str,
    num_proc: int,
    shards: list[Path],
) -> tuple[Dataset, dict[str, Any]]:
    dataset, failures, untrained, folder = encode_split(records, tokenizer, options, desc, num_proc)
    if folder is not None:
        shards.append(folder)
    skipped: dict[str, int] = {}
    settle_failures(records, failures, tokenizer, options["on_invalid"], skipped)
    if untrained:
        log.warning(
            "%s: %d example(s) had no trained token left after truncation to %d tokens and were dropped.",
            desc,
            untrained,
            options["max_length"],
        )
    if not len(dataset):
        raise DataError(
            f"{desc}: no example has a trained token left; raise train.max_length or check the data."
        )
    return dataset, {"skipped": skipped, "untrained": untrained}


def tokenize_records(
    records: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    train: TrainSpec,
    on_invalid: str = "error",
    desc: str = "Tokenizing",
    skipped: dict[str, int] | None = None,
    keep_untrained: bool = False,
    num_proc: int | None = None,
) -> Dataset:
    """A datasets.Dataset of input_ids and assistant_masks (plus num_tokens, num_trained, location).

    A chat template that cannot render any conversation of a kind (plain, tool calls, or the system turn
    data.system_prompt adds) raises RecipeError naming that setting. Other conversations it cannot render follow on_invalid (data.on_invalid; counted into `skipped`);
    examples with no trained token left after truncation are dropped (kept with keep_untrained, for audits).
    Results are cached (pipeline.data.cache). Large splits are encoded by num_proc worker processes
    (default: the usable cores) into Arrow shards that the result memory-maps.
    """
    from pipeline.data.cache import cached_dataset, content_key, enabled

    options = {
        "max_length": train.max_length,
        "loss_on": train.loss_on,
        "on_invalid": on_invalid,
        "keep_untrained": keep_untrained,
    }
    workers = num_proc or default_num_proc()
    key = content_key(records, tokenizer, options, workers)
    shards: list[Path] = []
    dataset, meta, hit = cached_dataset(
        key, lambda: _build(records, tokenizer, options, desc, workers, shards)
    )
    for folder in shards:  # stored in the cache (and reloaded from there), or needed until the process ends
        if enabled():
            shutil.rmtree(folder, ignore_errors=True)
        else:
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
    if hit:
        log.info("%s: reusing the tokenized data cache (%s).", desc, key)
    if skipped is not None:
        for source, count in meta["skipped"].items():
            skipped[source] = skipped.get(source, 0) + count
    return dataset
