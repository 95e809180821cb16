"""Data hygiene before training: exact and near-duplicate examples, train/eval contamination, and personal
data or secrets in the text, reported with locations and applied per the recipe (data.dedup, data.redact,
data.allow_contamination).

Texts are compared after normalisation (Unicode NFKC, case folded, punctuation dropped, whitespace
collapsed); system turns are left out because a shared system prompt would make every pair look alike.
Near duplicates are texts whose word-3-gram sets have a Jaccard similarity >= the threshold, found with
MinHash LSH and confirmed with the MinHash estimate (pipeline.data.near_duplicates), and grouped into
clusters: counts are of examples and clusters, never of pairs, and memory stays linear in the examples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.data.near_duplicates import (
    CHUNK,
    KEPT_DTYPE,
    NUM_PERM,
    band_keys,
    clusters,
    lsh_shape,
    matches,
    signatures,
    word_hashes,
)
from pipeline.data.pii import PLACEHOLDERS, redact_record, scan_pii
from pipeline.data.tools import tool_stats
from pipeline.data.workers import default_num_proc, map_chunks
from pipeline.errors import DataError

if TYPE_CHECKING:
    from pipeline.config.schema import DataSpec
    from pipeline.data.splits import Splits

log = logging.getLogger(__name__)

NEAR_DUPLICATE_THRESHOLD = 0.8  # Jaccard similarity of word 3-gram sets
EXAMPLES_SHOWN = 5  # locations listed per finding kind in reports


def record_text(record: dict[str, Any]) -> str:
    """The text of a record that duplicates and contamination are judged on (system turns excluded)."""
    if "text" in record:
        return record["text"]
    return "\n".join(m["content"] for m in record["messages"] if m["role"] != "system")


def normalize(text: str) -> str:
    """Case-folded NFKC text with punctuation removed and whitespace collapsed."""
    return " ".join(re.sub(r"[^\w]+", " ", unicodedata.normalize("NFKC", text).casefold()).split())


@dataclass
class Fingerprints:
    """What duplicates and contamination are judged on, computed once per split: the normalised-text hash
    of every record, the first record of each distinct text, MinHash signatures (and LSH band keys) of those
    distinct texts only, and the split's personal-data scan."""

    hashes: list[str]
    firsts: list[int]
    signatures: np.ndarray
    keys: np.ndarray
    pii: dict[str, Any] = dataclasses.field(default_factory=dict)


def _sign_chunk(
    records: list[dict[str, Any]], start: int, _: int
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Hashes, MinHash signatures and the personal-data scan of records[start:start+CHUNK]."""
    part = records[start : start + CHUNK]
    normal = [normalize(record_text(r)) for r in part]
    hashes = [hashlib.blake2b(n.encode("utf-8"), digest_size=12).hexdigest() for n in normal]
    return hashes, signatures([word_hashes(n) for n in normal]), scan_pii(part, EXAMPLES_SHOWN)


def fingerprints(
    records: list[dict[str, Any]], desc: str, threshold: float, num_proc: int = 1
) -> Fingerprints:
    """Fingerprints of one split, CHUNK records at a time in num_proc worker processes (memory stays bounded:
    only the signatures of distinct texts are kept), with progress."""
    hashes: list[str] = []
    firsts, parts, keys, seen = [], [], [], set()
    shape = lsh_shape(threshold)
    pii: dict[str, Any] = {"counts": Counter(), "records": 0, "examples": {}}
    for chunk_hashes, sigs, chunk_pii in map_chunks(_sign_chunk, records, CHUNK, num_proc, desc):
        new = []
        for offset, value in enumerate(chunk_hashes):
            if value not in seen:
                seen.add(value)
                firsts.append(len(hashes) + offset)
                new.append(offset)
        hashes += chunk_hashes
        keys.append(band_keys(sigs[new], *shape))
        parts.append(sigs[new].astype(KEPT_DTYPE))
        pii["counts"].update(chunk_pii["counts"])
        pii["records"] += chunk_pii["records"]
        for kind, shown in chunk_pii["examples"].items():
            kept = pii["examples"].setdefault(kind, [])
            kept += shown[: EXAMPLES_SHOWN - len(kept)]
    pii["counts"] = dict(pii["counts"])
    if not parts:
        empty = np.empty((0, NUM_PERM), dtype=KEPT_DTYPE)
        return Fingerprints(hashes, firsts, empty, band_keys(empty, *shape), pii)
    return Fingerprints(hashes, firsts, np.concatenate(parts), np.concatenate(keys), pii)


def subset(prints: Fingerprints, kept: list[int]) -> Fingerprints:
    """The fingerprints of the records `kept` (indices into the split), without hashing anything again."""
    position = {prints.hashes[index]: n for n, index in enumerate(prints.firsts)}
    hashes = [prints.hashes[i] for i in kept]
    firsts, rows, seen = [], [], set()
    for index, value in enumerate(hashes):
        if value not in seen:
            seen.add(value)
            firsts.append(index)
            rows.append(position[value])
    return Fingerprints(hashes, firsts, prints.signatures[rows], prints.keys[rows])


def _groups(hashes: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, value in enumerate(hashes):
        groups.setdefault(value, []).append(index)
    return groups


def duplicates(
    records: list[dict[str, Any]],
    threshold: float = NEAR_DUPLICATE_THRESHOLD,
    prints: Fingerprints | None = None,
) -> dict[str, Any]:
    """Exact (normalised) duplicates and near-duplicate clusters of one split, counted in examples.

    exact_duplicates: examples whose normalised text an earlier example already has (in exact_groups groups);
    near_duplicate_examples: distinct texts in near-duplicate clusters (near_clusters of them, two or more
    texts each); near_duplicates: the ones dedup drops (all but the first of each cluster). `drop` lists every
    index dedup removes, so one example of each exact group and each cluster stays."""
    prints = prints or fingerprints(records, "Hygiene", threshold)
    exact_groups = [g for g in _groups(prints.hashes).values() if len(g) > 1]
    drop = {i for group in exact_groups for i in group[1:]}
    found = clusters(prints.signatures, prints.keys, threshold)
    firsts = prints.firsts
    shown = []
    for members in found.members:
        records_of = [firsts[m] for m in members]
        drop.update(records_of[1:])
        if len(shown) < EXAMPLES_SHOWN:
            kept = int(members[0])
            scores = [
                found.similarity.get((kept, int(m)), found.similarity.get((int(m), kept)))
                for m in members[1:]
            ]
            known = [s for s in scores if s is not None]
            shown.append(
                {
                    "kept": _where(records, records_of[0]),
                    "duplicates": [_where(records, i) for i in records_of[1 : 1 + EXAMPLES_SHOWN]],
                    "examples": len(members),
                    "similarity": round(min(known), 3) if known else None,
                }
            )
    return {
        "exact_groups": len(exact_groups),
        "exact_duplicates": sum(len(g) - 1 for g in exact_groups),
        "exact_examples": [[_where(records, i) for i in g] for g in exact_groups[:EXAMPLES_SHOWN]],
        "near_clusters": len(found.members),
        "near_duplicate_examples": found.examples,
        "near_duplicates": found.examples - len(found.members),
        "near_examples": shown,
        "threshold": threshold,
        "drop": sorted(drop),
    }


def contamination(
    train: list[dict[str, Any]],
    evaluation: list[dict[str, Any]],
    threshold: float = NEAR_DUPLICATE_THRESHOLD,
    prints: Fingerprints | None = None,
) -> dict[str, Any]:
    """Eval records whose text also appears in train, exactly (normalised) or near-exactly; `train_matches`
    lists the train records found (every exact copy, the most similar near copy)."""
    prints = prints or fingerprints(train, "Hygiene", threshold)
    by_hash = _groups(prints.hashes)
    other = fingerprints(evaluation, "Hygiene (eval)", threshold)
    near_o, near_t, near_s = matches(prints.signatures, prints.keys, other.signatures, other.keys, threshold)
    near = {int(o): (prints.firsts[int(t)], float(s)) for o, t, s in zip(near_o, near_t, near_s, strict=True)}
    distinct = {other.hashes[index]: position for position, index in enumerate(other.firsts)}
    found, train_hits = [], set()
    for index, value in enumerate(other.hashes):
        exact = by_hash.get(value)
        match = (exact[0], 1.0) if exact else near.get(distinct[value])
        if match is None:
            continue
        train_hits.update(exact or [match[0]])
        found.append(
            {
                "eval": _where(evaluation, index),
                "train": _where(train, match[0]),
                "similarity": round(match[1], 3),
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
    num_proc: int = 1,
) -> HygieneResult:
    """Report duplicates, contamination and personal data; with dedup, drop duplicates in train (and train
    copies of eval examples); with redact_pii, replace personal data; raise DataError on contamination
    unless allowed. The report's "tools" counts the tool calling of the train split that is kept (for the
    run's audit page, which a rerun from the prepared-data cache draws without reading the records)."""
    train, evaluation = list(splits.train), list(splits.eval)
    report: dict[str, Any] = {"train_examples": len(train), "eval_examples": len(evaluation)}
    prints = fingerprints(train, "Hygiene", threshold, num_proc)
    report["duplicates"] = duplicates(train, threshold, prints)
    report["contamination"] = contamination(train, evaluation, threshold, prints)
    report["pii"] = {"train": prints.pii, "eval": scan_pii(evaluation, EXAMPLES_SHOWN)}
    removed = set(report["duplicates"].pop("drop"))
    train_matches = report["contamination"].pop("train_matches")
    if dedup:
        removed |= set(train_matches)
        kept = [i for i in range(len(train)) if i not in removed]
        train = [train[i] for i in kept]
        report["removed"] = len(removed)
        after = contamination(train, evaluation, threshold, subset(prints, kept))
        report["contamination_after_dedup"] = after["contaminated"]
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
    report["tools"] = tool_stats(train)
    return HygieneResult(replace(splits, train=train, eval=evaluation), report)


def apply_hygiene(data: DataSpec, splits: Splits) -> HygieneResult:
    """check_splits with the recipe's data.dedup, data.redact and data.allow_contamination; what it found
    is logged in one line per finding kind (values never appear)."""
    result = check_splits(
        splits,
        dedup=data.dedup,
        redact_pii=data.redact,
        allow_contamination=data.allow_contamination,
        num_proc=data.num_proc or default_num_proc(),
    )
    log_hygiene(result.report)
    return result


def log_hygiene(report: dict[str, Any]) -> None:
    """What hygiene found, one warning line per finding kind (values never appear)."""
    dup = report["duplicates"]
    if dup["exact_duplicates"] or dup["near_clusters"]:
        action = (
            f"removed {report['removed']} (one example of each group and cluster kept)"
            if "removed" in report
            else "kept (set data.dedup: true to keep one per group and cluster)"
        )
        log.warning(
            "Data hygiene: of %d training examples, %d repeat an earlier one exactly and %d fall in %d "
            "near-duplicate cluster(s); %s.",
            report["train_examples"],
            dup["exact_duplicates"],
            dup["near_duplicate_examples"],
            dup["near_clusters"],
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
