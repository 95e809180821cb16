"""Data hygiene before training: exact and near-duplicate examples, train/eval contamination, and personal
data or secrets in the text, reported with locations and applied per the recipe (data.dedup, data.redact,
data.allow_contamination).

Texts are compared after normalisation (Unicode NFKC, case folded, punctuation dropped, whitespace
collapsed); system turns are left out because a shared system prompt would make every pair look alike.
Near duplicates are pairs whose word-3-gram sets have a Jaccard similarity >= the threshold, found with
MinHash LSH (datasketch) and confirmed with the MinHash estimate.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.data.pii import PLACEHOLDERS, find_pii, mask, redact
from pipeline.errors import DataError

if TYPE_CHECKING:
    from datasketch import MinHash

    from pipeline.config.schema import DataSpec
    from pipeline.data.splits import Splits

log = logging.getLogger(__name__)

NEAR_DUPLICATE_THRESHOLD = 0.8  # Jaccard similarity of word 3-gram sets
NUM_PERM = 128  # MinHash permutations: the Jaccard estimate's standard error is ~1/sqrt(128) = 0.09
EXAMPLES_SHOWN = 5  # locations listed per finding kind in reports


def record_text(record: dict[str, Any]) -> str:
    """The text of a record that duplicates and contamination are judged on (system turns excluded)."""
    if "text" in record:
        return record["text"]
    return "\n".join(m["content"] for m in record["messages"] if m["role"] != "system")


def normalize(text: str) -> str:
    """Case-folded NFKC text with punctuation removed and whitespace collapsed."""
    return " ".join(re.sub(r"[^\w]+", " ", unicodedata.normalize("NFKC", text).casefold()).split())


def text_hash(text: str) -> str:
    """A short stable hash of the normalised text."""
    return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=12).hexdigest()


def minhashes(texts: list[str]) -> list[MinHash]:
    """MinHash signatures of the word 3-grams of each normalised text (the words themselves if fewer)."""
    from datasketch import MinHash

    shingles = []
    for text in texts:
        words = normalize(text).split() or [""]
        shingles.append([" ".join(words[i : i + 3]).encode("utf-8") for i in range(max(1, len(words) - 2))])
    return MinHash.bulk(shingles, num_perm=NUM_PERM, seed=1)


def _groups(hashes: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, value in enumerate(hashes):
        groups.setdefault(value, []).append(index)
    return groups


def near_pairs(signatures: list[MinHash], threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, similarity) for i < j whose estimated Jaccard similarity is >= threshold."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    pairs = []
    for index, signature in enumerate(signatures):
        for other in lsh.query(signature):
            similarity = signature.jaccard(signatures[other])
            if similarity >= threshold:
                pairs.append((other, index, similarity))
        lsh.insert(index, signature)
    return sorted(pairs)


def duplicates(records: list[dict[str, Any]], threshold: float = NEAR_DUPLICATE_THRESHOLD) -> dict[str, Any]:
    """Exact (normalised) and near-duplicate records of one split; `drop` lists the indices dedup removes
    (every record after the first of its group)."""
    texts = [record_text(r) for r in records]
    hashes = [text_hash(t) for t in texts]
    exact_groups = [g for g in _groups(hashes).values() if len(g) > 1]
    drop = {i for group in exact_groups for i in group[1:]}
    firsts = [g[0] for g in _groups(hashes).values()]
    signatures = minhashes([texts[i] for i in firsts])
    near = []
    for a, b, similarity in near_pairs(signatures, threshold):
        i, j = firsts[a], firsts[b]
        if i not in drop:  # chains keep their first member only
            drop.add(j)
        near.append(
            {"first": _where(records, i), "duplicate": _where(records, j), "similarity": round(similarity, 3)}
        )
    return {
        "exact_groups": len(exact_groups),
        "exact_duplicates": sum(len(g) - 1 for g in exact_groups),
        "exact_examples": [[_where(records, i) for i in g] for g in exact_groups[:EXAMPLES_SHOWN]],
        "near_duplicates": len(near),
        "near_examples": near[:EXAMPLES_SHOWN],
        "threshold": threshold,
        "drop": sorted(drop),
    }


def contamination(
    train: list[dict[str, Any]], evaluation: list[dict[str, Any]], threshold: float = NEAR_DUPLICATE_THRESHOLD
) -> dict[str, Any]:
    """Eval records whose text also appears in train, exactly (normalised) or near-exactly."""
    from datasketch import MinHashLSH

    train_texts = [record_text(r) for r in train]
    by_hash = {h: i for i, h in reversed(list(enumerate(text_hash(t) for t in train_texts)))}
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    train_signatures = minhashes(train_texts)
    for index, signature in enumerate(train_signatures):
        lsh.insert(index, signature)
    eval_texts = [record_text(r) for r in evaluation]
    found, train_hits = [], set()
    for index, (text, signature) in enumerate(
        zip(eval_texts, minhashes(eval_texts) if eval_texts else [], strict=True)
    ):
        exact = by_hash.get(text_hash(text))
        matches = [] if exact is None else [(exact, 1.0)]
        if exact is None:
            scored = [(j, signature.jaccard(train_signatures[j])) for j in lsh.query(signature)]
            matches = sorted((m for m in scored if m[1] >= threshold), key=lambda m: -m[1])
        if matches:
            train_hits.update(j for j, _ in matches)
            found.append(
                {
                    "eval": _where(evaluation, index),
                    "train": _where(train, matches[0][0]),
                    "similarity": round(matches[0][1], 3),
                    "exact": exact is not None,
                }
            )
    return {
        "contaminated": len(found),
        "eval_examples": len(evaluation),
        "examples": found[:EXAMPLES_SHOWN],
        "train_matches": sorted(train_hits),
    }


def _where(records: list[dict[str, Any]], index: int) -> str:
    return str(records[index].get("location", f"record {index}"))


def _fields(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) per field; turns are named by role and number ('assistant turn 1'), since message
    indices shift when data.system_prompt adds a system turn."""
    if "text" in record:
        return [("text", record["text"])]
    seen: Counter[str] = Counter()
    fields = []
    for message in record["messages"]:
        seen[message["role"]] += 1
        fields.append((f"{message['role']} turn {seen[message['role']]}", message["content"]))
    return fields


def scan_pii(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of personal data and secrets per kind, with masked examples and their locations."""
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    affected = 0
    for record in records:
        hit = False
        for field, text in _fields(record):
            for finding in find_pii(text):
                hit = True
                counts[finding.kind] += 1
                shown = examples.setdefault(finding.kind, [])
                if len(shown) < EXAMPLES_SHOWN:
                    shown.append(f"{record.get('location', 'record')} ({field}): {mask(finding.value)}")
        affected += hit
    return {"counts": dict(counts), "records": affected, "examples": examples}


def redact_record(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of the record with personal data and secrets replaced by placeholders."""
    if "text" in record:
        return {**record, "text": redact(record["text"])}
    return {**record, "messages": [{**m, "content": redact(m["content"])} for m in record["messages"]]}


@dataclass
class HygieneResult:
    """The cleaned splits and what was found and done."""

    splits: Splits
    report: dict[str, Any]


def check_splits(
    splits: Splits,
    dedup: bool = False,
    redact_pii: bool = False,
    allow_contamination: bool = True,
    threshold: float = NEAR_DUPLICATE_THRESHOLD,
) -> HygieneResult:
    """Report duplicates, contamination and personal data; with dedup, drop duplicates in train (and train
    copies of eval examples); with redact_pii, replace personal data; raise DataError on contamination
    unless allowed."""
    train, evaluation = list(splits.train), list(splits.eval)
    report: dict[str, Any] = {"train_examples": len(train), "eval_examples": len(evaluation)}
    report["duplicates"] = duplicates(train, threshold)
    report["contamination"] = contamination(train, evaluation, threshold)
    report["pii"] = {"train": scan_pii(train), "eval": scan_pii(evaluation)}
    removed = set(report["duplicates"].pop("drop"))
    train_matches = report["contamination"].pop("train_matches")
    if dedup:
        removed |= set(train_matches)
        train = [r for i, r in enumerate(train) if i not in removed]
        report["removed"] = len(removed)
        report["contamination_after_dedup"] = contamination(train, evaluation, threshold)["contaminated"]
    if redact_pii:
        train, evaluation = [redact_record(r) for r in train], [redact_record(r) for r in evaluation]
        report["redacted"] = {
            k: sum(report["pii"][s]["counts"].get(k, 0) for s in ("train", "eval")) for k in PLACEHOLDERS
        }
    left = report.get("contamination_after_dedup", report["contamination"]["contaminated"])
    if left and not allow_contamination:
        first = report["contamination"]["examples"][0]
        raise DataError(
            f"{first['eval']}: {left} eval example(s) also appear in the training data (e.g. {first['train']}, "
            "similarity {:.2f}); remove them, set data.dedup: true to drop the train copies, or set "
            "data.allow_contamination: true.".format(first["similarity"])
        )
    if not train:
        raise DataError("data.train: no training records left after deduplication; check the data.")
    return HygieneResult(replace(splits, train=train, eval=evaluation), report)


def apply_hygiene(data: DataSpec, splits: Splits) -> HygieneResult:
    """check_splits with the recipe's data.dedup, data.redact and data.allow_contamination; what it found
    is logged in one line per finding kind (values never appear)."""
    result = check_splits(
        splits,
        dedup=data.dedup,
        redact_pii=data.redact,
        allow_contamination=data.allow_contamination,
    )
    report = result.report
    dup = report["duplicates"]
    if dup["exact_duplicates"] or dup["near_duplicates"]:
        action = (
            f"removed {report['removed']}" if "removed" in report else "kept (set data.dedup: true to drop)"
        )
        log.warning(
            "Data hygiene: %d exact and %d near-duplicate training example(s); %s.",
            dup["exact_duplicates"],
            dup["near_duplicates"],
            action,
        )
    left = report.get("contamination_after_dedup", report["contamination"]["contaminated"])
    if left:
        log.warning(
            "Data hygiene: %d eval example(s) also in train (allowed by data.allow_contamination).", left
        )
    counts = Counter(report["pii"]["train"]["counts"]) + Counter(report["pii"]["eval"]["counts"])
    if counts:
        action = (
            "replaced with placeholders"
            if "redacted" in report
            else "kept (set data.redact: true to replace)"
        )
        log.warning(
            "Data hygiene: personal data / secrets found (%s); %s. `pipeline data hygiene` lists where.",
            ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            action,
        )
    return result


def _similarity(match: dict[str, Any]) -> str:
    return "exact" if match["exact"] else f"{match['similarity']:.2f}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The hygiene report as short human-readable lines (values masked)."""
    dup, cont = report["duplicates"], report["contamination"]
    lines = [
        f"examples: {report['train_examples']} train, {report['eval_examples']} eval",
        f"exact duplicates (normalised text): {dup['exact_duplicates']} in {dup['exact_groups']} group(s)",
        *(f"  {' = '.join(group)}" for group in dup["exact_examples"]),
        f"near duplicates (word 3-gram Jaccard >= {dup['threshold']}): {dup['near_duplicates']} pair(s)",
        *(f"  {n['duplicate']} ~ {n['first']} ({n['similarity']:.2f})" for n in dup["near_examples"]),
        f"eval examples also in train: {cont['contaminated']} of {cont['eval_examples']}",
        *(f"  {c['eval']} ~ {c['train']} ({_similarity(c)})" for c in cont["examples"]),
    ]
    for split in ("train", "eval"):
        pii = report["pii"][split]
        counts = ", ".join(f"{k} {v}" for k, v in sorted(pii["counts"].items())) or "none"
        lines.append(f"personal data / secrets in {split}: {counts}")
        lines += [f"  {example}" for kind in sorted(pii["examples"]) for example in pii["examples"][kind]]
    if "removed" in report:
        lines.append(f"removed by data.dedup: {report['removed']} train example(s)")
    if "redacted" in report:
        lines.append(f"redacted by data.redact: {sum(report['redacted'].values())} value(s)")
    return lines


def hygiene_report(
    target: str, eval_file: str | None = None, output: Path | None = None, base: str = "lora-small"
) -> dict[str, Any]:
    """Load a recipe's (or a data file's) splits, check them without changing anything, and write the
    JSON report (default <train.output_dir>/<name>-hygiene.json); returns it with `lines` for the terminal."""
    from pipeline.data.adhoc import recipe_for
    from pipeline.data.splits import load_splits
    from pipeline.files import write_json

    recipe = recipe_for(target, base, eval_file)
    path = Path(target)
    name = path.stem if path.exists() and path.suffix.lower() not in (".yaml", ".yml") else recipe.name
    report = check_splits(load_splits(recipe.data)).report
    output = output or Path(recipe.train.output_dir) / f"{name}-hygiene.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json(output, report)
    report["lines"] = [f"{target}:", *summary_lines(report), f"wrote {output}"]
    return report
