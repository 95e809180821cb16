"""`pipeline data audit`: show which tokens carry the loss, summarise lengths, and stop on broken masks."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.data.tools import tool_stats
from pipeline.errors import DataError
from pipeline.files import write_text

if TYPE_CHECKING:
    from datasets import Dataset
    from rich.console import Console
    from rich.text import Text
    from transformers import PreTrainedTokenizerBase

PERCENTILES = (50, 90, 99, 100)


@dataclass
class AuditStats:
    """Token statistics of a tokenized split (lengths are before truncation)."""

    examples: int
    tokens: int
    trained_tokens: int
    length_percentiles: dict[int, int]
    truncated: int
    trained_tokens_lost: int
    max_length: int

    @property
    def trained_fraction(self) -> float:
        """Share of the (kept) tokens that carry the loss."""
        return self.trained_tokens / max(1, self.tokens)


def _percentile(sorted_values: list[int], q: int) -> int:
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def compute_stats(dataset: Dataset, max_length: int) -> AuditStats:
    """Examples, tokens, length percentiles, truncation at max_length and the trained tokens it cost."""
    lengths: list[int] = dataset["num_tokens"]
    masks: list[list[int]] = dataset["assistant_masks"]
    kept_trained = [sum(m) for m in masks]
    lost = sum(total - kept for total, kept in zip(dataset["num_trained"], kept_trained, strict=True))
    ordered = sorted(lengths)
    return AuditStats(
        examples=len(lengths),
        tokens=sum(len(m) for m in masks),
        trained_tokens=sum(kept_trained),
        length_percentiles={q: _percentile(ordered, q) for q in PERCENTILES},
        truncated=sum(n > max_length for n in lengths),
        trained_tokens_lost=lost,
        max_length=max_length,
    )


def special_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids of every special token: the named ones and added tokens flagged special."""
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, t in tokenizer.added_tokens_decoder.items() if t.special)
    return ids


def _runs(mask: list[int]) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of trained tokens."""
    runs, start = [], None
    for index, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = index
        elif not bit and start is not None:
            runs.append((start, index))
            start = None
    return runs


def check_example(row: dict[str, Any], tokenizer: PreTrainedTokenizerBase, specials: set[int]) -> None:
    """Raise DataError if the example trains on no token, or a trained turn lacks its end-of-turn token."""
    ids, mask, location = row["input_ids"], row["assistant_masks"], row.get("location", "record")
    if not any(mask):
        cause = (
            f"its trained tokens all lie past train.max_length={len(ids)}; raise train.max_length"
            if row["num_trained"]
            else "the template renders no assistant token; check the template and train.loss_on"
        )
        raise DataError(f"{location}: this example would train on zero tokens ({cause}).")
    truncated = row["num_tokens"] > len(ids)
    for start, end in _runs(mask):
        if truncated and end == len(ids):
            continue  # the turn's end was cut by max_length; counted in the truncation statistics
        last = end - 1
        while last > start and ids[last] not in specials and not tokenizer.decode([ids[last]]).strip():
            last -= 1  # whitespace after the end-of-turn token (e.g. ChatML's newline)
        if ids[last] not in specials:
            following = repr(tokenizer.decode([ids[end]])) if end < len(ids) else "nothing"
            raise DataError(
                f"{location}: a trained assistant turn (tokens {start}-{end - 1}) ends without a trained "
                f"end-of-turn/EOS token (next: {following}), so the model would not learn to stop; use a "
                "chat template whose assistant turns end with a special token (see recipes/templates/)."
            )


def check_masks(dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> None:
    """check_example on every example of a tokenized split."""
    specials = special_ids(tokenizer)
    for row in dataset:
        check_example(row, tokenizer, specials)


def _pieces(row: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> list[tuple[str, bool]]:
    return [
        (tokenizer.decode([i]), bool(m))
        for i, m in zip(row["input_ids"], row["assistant_masks"], strict=True)
    ]


def render_terminal(row: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> Text:
    """One example as rich Text: trained tokens on green, the rest dimmed; newlines shown as ↵."""
    from rich.text import Text

    text = Text()
    for index, (piece, trained) in enumerate(_pieces(row, tokenizer)):
        shade = "on green4" if index % 2 else "on dark_green"  # alternate so token boundaries stay visible
        text.append(piece.replace("\n", "↵\n"), style=f"bold white {shade}" if trained else "grey50")
    return text


def stats_lines(stats: AuditStats, split: str) -> list[str]:
    """The summary printed by the audit and written into its HTML page."""
    pct = ", ".join(f"p{q}={v}" for q, v in stats.length_percentiles.items())
    return [
        f"{split}: {stats.examples} examples, {stats.tokens} tokens, {stats.trained_tokens} trained "
        f"({stats.trained_fraction:.1%} of tokens)",
        f"length (tokens, before truncation): {pct}",
        f"truncated at max_length={stats.max_length}: {stats.truncated} example(s), "
        f"{stats.trained_tokens_lost} trained token(s) lost",
    ]


def tool_lines(records: list[dict[str, Any]]) -> list[str]:
    """Tool-calling counts of a split's records (none when it has no tools, calls or untrained turns)."""
    return tool_count_lines(tool_stats(records))


def tool_count_lines(stats: dict[str, int] | None) -> list[str]:
    """The tool-calling line of tools.tool_stats counts (none when all are zero or there are none)."""
    if not stats or not any(stats.values()):
        return []
    return [
        f"tool calling: {stats['records_with_tools']} record(s) with tools, {stats['tool_call_turns']} "
        f"tool-call turn(s) ({stats['tool_calls']} call(s), trained), {stats['tool_outputs']} tool "
        f"output(s) (never trained), {stats['untrained']} assistant turn(s) marked train: false"
    ]


def write_html(
    path: Path, rows: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, lines: list[str]
) -> Path:
    """A self-contained HTML page with the summary and each example, trained tokens highlighted."""
    blocks = []
    for row in rows:
        spans = "".join(
            f'<span class="{"t" if trained else "u"}">{html.escape(piece)}</span>'
            for piece, trained in _pieces(row, tokenizer)
        )
        blocks.append(f"<h3>{html.escape(str(row.get('location', '')))}</h3><pre>{spans}</pre>")
    summary = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    page = (
        "<!doctype html><meta charset='utf-8'><title>data audit</title><style>"
        "body{font-family:sans-serif;max-width:70em;margin:auto}pre{white-space:pre-wrap;background:#f6f6f6;"
        "padding:.5em}.t{background:#b6f2b6}.t:nth-child(even){background:#8fe08f}.u{color:#888}</style>"
        "<h1>Data audit</h1><p>Highlighted tokens carry the loss; grey ones are context only.</p>"
        f"<ul>{summary}</ul>{''.join(blocks)}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, page)
    return path


def audit(recipe: Recipe, examples: int, split: str, html_path: Path | None, console: Console) -> AuditStats:
    """Tokenize the recipe's data as training would, print N examples and statistics, write the HTML page,
    and raise DataError when a mask is wrong (zero trained tokens, untrained end-of-turn token)."""
    from pipeline.data.splits import load_splits
    from pipeline.data.tokenize import tokenize_records
    from pipeline.models.loading import load_tokenizer

    splits = load_splits(recipe.data)
    records = splits.train if split == "train" else splits.eval
    if not records:
        raise DataError(f"the recipe has no {split} records; audit --split train instead.")
    tokenizer = load_tokenizer(recipe.model)
    skipped = dict(splits.skipped)
    dataset = tokenize_records(
        records,
        tokenizer,
        recipe.train,
        recipe.data.on_invalid,
        desc=f"Tokenizing {split}",
        skipped=skipped,
        keep_untrained=True,
        num_proc=recipe.data.num_proc,
    )
    shown = [dataset[i] for i in range(min(examples, len(dataset)))]
    for row in shown:
        console.rule(str(row["location"]))
        console.print(render_terminal(row, tokenizer))
    stats = compute_stats(dataset, recipe.train.max_length)
    lines = stats_lines(stats, split) + tool_lines(records)
    if skipped:
        per_source = ", ".join(f"{k}: {v}" for k, v in skipped.items())
        lines.append(f"skipped invalid records: {sum(skipped.values())} ({per_source})")
    if html_path is not None:
        write_html(html_path, shown, tokenizer, lines)
        lines.append(f"HTML: {html_path}")
    console.rule("summary")
    for line in lines:
        console.print(line, highlight=False)
    check_masks(dataset, tokenizer)
    console.print(
        f"[green]masks OK[/]: every example trains on at least one token and every trained "
        f"turn ends with its end-of-turn token ({tokenizer.eos_token!r} is EOS)."
    )
    return stats


def write_run_page(
    path: Path,
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    examples: int = 8,
    note: str | None = None,
    tools: dict[str, int] | None = None,
) -> AuditStats:
    """The audit page of a run's tokenized train split (what finetune trained on), written to path; `note`
    heads the statistics (a streamed split's page shows its first records only); `tools`: the split's
    tool-calling counts (the hygiene report's "tools"), shown as `pipeline data audit` shows them."""
    stats = compute_stats(dataset, max_length)
    rows = [dataset[i] for i in range(min(examples, len(dataset)))]
    lines = [*([note] if note else []), *stats_lines(stats, "train"), *tool_count_lines(tools)]
    write_html(path, rows, tokenizer, lines)
    return stats
