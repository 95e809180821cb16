"""What a training run starts from: the recipe's data (checked, tokenized with loss masks) and the base model.

`workflow.finetune`, `pipeline tokens`, the benchmarks and the tests all prepare a run through these two
functions, so the order (read -> hygiene -> tokenize; seed -> load -> check the LoRA targets) lives here once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.config.stages import DistillSpec
from pipeline.data.hygiene import apply_hygiene, log_hygiene
from pipeline.data.pairs import pair_dataset
from pipeline.data.prepared import Deferred, dataset_folder, load_prepared, prepared_key, store_prepared
from pipeline.data.splits import Splits, load_sources, load_splits
from pipeline.data.tokenize import tokenize_records
from pipeline.models.loading import load_base_model, load_tokenizer
from pipeline.models.parent import attach_parent, parent_of
from pipeline.train.guards import check_target_modules
from pipeline.train.stages.registry import check_records, stage

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

STREAM_SHUFFLE = 10_000  # examples (tokenized) held to shuffle a stream: ~60 MB at 1k tokens each


@dataclass
class Inputs:
    """A run's data: records as loaded (after hygiene), what hygiene found, and the tokenized splits."""

    splits: Splits
    hygiene: dict[str, Any]
    tokenizer: PreTrainedTokenizerBase
    train: Dataset  # with data.streaming: the stream's first rows only (checked, shown on the audit page)
    eval: Dataset | None
    stream: IterableDataset | None = None  # data.streaming: the training split, read as it trains

    @property
    def training_data(self) -> Dataset | IterableDataset:
        """What trains: the stream (data.streaming), else the tokenized train split."""
        return self.train if self.stream is None else self.stream


def prepare_inputs(recipe: Recipe, held_out: bool | None = None) -> Inputs:
    """Load the splits, apply data.dedup/redact (refusing contaminated eval data) and tokenize them.

    The eval split is tokenized (truncated to train.max_length, like training) only for the held-out loss
    during training: held_out, by default when train.eval_steps is set. Evaluation after training scores the
    eval records untruncated from `splits`, so long eval answers never stop a run that does not need this."""
    tokenizer = load_tokenizer(recipe.model)
    held_out = recipe.train.eval_steps > 0 if held_out is None else held_out
    if recipe.data.streaming:
        return _prepare_stream(recipe, tokenizer, held_out)
    options = {"max_length": recipe.train.max_length, "loss_on": recipe.train.loss_on, "held_out": held_out}
    # Only the SFT view is cached whole: other stages read every training record again (trl's columns).
    key = prepared_key(recipe.data, tokenizer, options) if recipe.stage_settings is None else None
    entry = load_prepared(key)
    if entry is not None:
        log.info(
            "Reusing the prepared data (%d train examples; prepared-data cache %s).", len(entry["train"]), key
        )
        log_hygiene(entry["hygiene"])
        splits = Splits(
            train=Deferred(
                entry["train_records"],
                lambda: apply_hygiene(recipe.data, load_splits(recipe.data)).splits.train,
            ),
            eval=entry["eval_records"],
            skipped=entry["skipped"],
        )
        return Inputs(splits, entry["hygiene"], tokenizer, entry["train"], entry["eval"])
    inputs = _prepare(recipe, tokenizer, held_out)
    store_prepared(
        key,
        {
            "train_folder": dataset_folder(inputs.train),
            "eval_folder": dataset_folder(inputs.eval),
            "train_records": len(inputs.splits.train),
            "eval_records": inputs.splits.eval,
            "skipped": inputs.splits.skipped,
            "hygiene": inputs.hygiene,
        },
    )
    return inputs


def _prepare(recipe: Recipe, tokenizer: PreTrainedTokenizerBase, held_out: bool) -> Inputs:
    splits = load_splits(recipe.data)
    hygiene = apply_hygiene(recipe.data, splits)
    splits = hygiene.splits
    check_records(recipe.train.stage, [*splits.train, *splits.eval])
    on_invalid = recipe.data.on_invalid
    prompts_only = stage(recipe.train.stage).data == "prompts"  # nothing to train in the SFT view: keep all
    train = tokenize_records(
        splits.train,
        tokenizer,
        recipe.train,
        on_invalid,
        desc="Tokenizing train",
        skipped=splits.skipped,
        keep_untrained=prompts_only,
        num_proc=recipe.data.num_proc,
    )
    eval_set = (
        tokenize_records(
            splits.eval,
            tokenizer,
            recipe.train,
            on_invalid,
            desc="Tokenizing eval",
            skipped=splits.skipped,
            keep_untrained=prompts_only,
            num_proc=recipe.data.num_proc,
        )
        if splits.eval and held_out
        else None
    )
    if recipe.stage_settings is not None:  # trl's conversational columns, beside the SFT view audits show
        limit = recipe.stage_settings.max_prompt_length
        if isinstance(recipe.stage_settings, DistillSpec):  # the student's answer must fit after the prompt
            limit = limit or recipe.train.max_length - recipe.stage_settings.max_completion_length
        train = pair_dataset(train, splits.train, tokenizer, recipe.train.max_length, limit)
        if eval_set is not None:
            eval_set = pair_dataset(eval_set, splits.eval, tokenizer, recipe.train.max_length, limit)
    return Inputs(splits=splits, hygiene=hygiene.report, tokenizer=tokenizer, train=train, eval=eval_set)


def _prepare_stream(recipe: Recipe, tokenizer: PreTrainedTokenizerBase, held_out: bool) -> Inputs:
    """data.streaming: the training split as a stream (its first rows checked here), the eval files loaded
    and tokenized whole; hygiene is a separate pass over the files."""
    from pipeline.data.streaming import open_stream, stream_sample

    stream = open_stream(recipe.data, tokenizer, recipe.train)
    sample = stream_sample(stream)
    log.warning(
        "data.streaming: hygiene (duplicates, contamination, personal data) is not run on a stream; "
        "check the files with `pipeline data hygiene %s`.",
        recipe.path or recipe.name,
    )
    skipped: dict[str, int] = {}
    eval_records = load_sources(recipe.data, recipe.data.eval, skipped) if recipe.data.eval else []
    eval_set = None
    if eval_records and held_out:
        eval_set = tokenize_records(
            eval_records,
            tokenizer,
            recipe.train,
            recipe.data.on_invalid,
            desc="Tokenizing eval",
            skipped=skipped,
            num_proc=recipe.data.num_proc,
        )
    splits = Splits(train=[], eval=eval_records, skipped=skipped)
    hygiene = {"streamed": True, "run": f"pipeline data hygiene {recipe.path or recipe.name}"}
    # A buffer of STREAM_SHUFFLE examples mixes what comes in file order (datasets also shuffles the parts).
    shuffled = stream.shuffle(seed=recipe.data.seed, buffer_size=STREAM_SHUFFLE)
    return Inputs(splits, hygiene, tokenizer, sample, eval_set, stream=shuffled)


def load_model(recipe: Recipe) -> PreTrainedModel:
    """The base model, seeded with train.seed first (LoRA init), its adapter targets checked against it; with
    model.adapter, the base carrying that adapter (a peft PeftModel) ready to train further."""
    import torch

    torch.manual_seed(recipe.train.seed)
    model = load_base_model(recipe.model)
    parent = parent_of(recipe)
    if parent is not None:  # the parent's own LoRA targets and rank, trained further
        return attach_parent(model, parent)
    check_target_modules(recipe.adapter, model, str(recipe.path or recipe.name))
    if stage(recipe.train.stage).head == "score":
        from pipeline.models.heads import to_reward_model

        return to_reward_model(model, seed=recipe.train.seed)
    return model
