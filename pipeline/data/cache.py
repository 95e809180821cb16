"""Cache of tokenized data sets under a content key, in <pipeline cache>/datasets/<key>/.

The key hashes everything the tokenized result depends on: the converted records (hence the data files,
their format, column mapping, mixture and system prompt), the tokenizer (vocabulary, merges, special
tokens, chat template), the formatting options (loss_on, max_length) and the pipeline version. A change to
any of them gives a new key, so a stale entry is never reused. Entries are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import __version__
from pipeline.files import atomic_dir, write_json
from pipeline.models.assets import cache_dir

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)
# Bump when pipeline.data.formatting or .encode change what they produce (4: int32 ids, int8 masks, chunked key).
FORMAT_VERSION = 4


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of what tokenization depends on: the tokenizer model, special tokens and chat template."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update(
        backend.to_str().encode()
        if backend is not None
        else repr(sorted(tokenizer.get_vocab().items())).encode()
    )
    digest.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    digest.update(str(tokenizer.chat_template).encode())
    return digest.hexdigest()


KEY_CHUNK = 20000  # records hashed per worker task


def _digest_chunk(records: list[dict[str, Any]], start: int, _: int) -> bytes:
    digest = hashlib.sha256()
    for record in records[start : start + KEY_CHUNK]:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.digest()


def content_key(
    records: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    options: dict[str, Any],
    num_proc: int = 1,
) -> str:
    """The cache key for tokenizing these records with this tokenizer and these options (the records are
    hashed in chunks, by num_proc workers when there are many)."""
    from pipeline.data.workers import map_chunks

    digest = hashlib.sha256()
    digest.update(
        json.dumps({"pipeline": __version__, "format": FORMAT_VERSION, **options}, sort_keys=True).encode()
    )
    digest.update(tokenizer_fingerprint(tokenizer).encode())
    for part in map_chunks(_digest_chunk, records, KEY_CHUNK, num_proc, "Hashing records"):
        digest.update(part)
    return digest.hexdigest()[:32]


def enabled() -> bool:
    """The cache is on unless PIPELINE_DATA_CACHE=0."""
    return os.environ.get("PIPELINE_DATA_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def cached_dataset(
    key: str, build: Callable[[], tuple[Dataset, dict[str, Any]]]
) -> tuple[Dataset, dict[str, Any], bool]:
    """The data set stored under key, or build() it and store it; returns (dataset, meta, was_cached)."""
    from datasets import load_from_disk

    folder = cache_dir() / "datasets" / key
    if enabled() and (folder / "meta.json").is_file():
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            return load_from_disk(str(folder / "data")), meta, True
        except (OSError, ValueError) as exc:  # a damaged entry is rebuilt, never trusted
            log.warning("Ignoring a damaged data cache entry %s (%s).", folder, exc)
    dataset, meta = build()
    if enabled():
        try:
            _store(folder, dataset, meta)
            dataset = load_from_disk(str(folder / "data"))
        except OSError as exc:
            log.warning("Could not write the data cache %s (%s); continuing without it.", folder, exc)
    return dataset, meta, False


def _store(folder: Path, dataset: Dataset, meta: dict[str, Any]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(folder) as tmp:
        dataset.save_to_disk(str(tmp / "data"))
        write_json(tmp / "meta.json", meta)
