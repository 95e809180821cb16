"""The prepared-data cache: a rerun on unchanged data starts at once, skipping reading, validation, hygiene
and tokenization, in <pipeline cache>/prepared/<key>.json.

The key hashes the bytes of every local data file (xxh3, ~GB/s), the whole data section, the tokenizer
fingerprint, the tokenization options and the pipeline version. An entry holds the hygiene report, the
skipped counts, the eval records and where the tokenized splits lie in the tokenized-data cache
(pipeline.data.cache); it is used only when those folders still exist. The training records themselves are
not stored: `Splits.train` becomes a Deferred list that loads them again (with hygiene) only if something
reads them, which an SFT run does not. Hub sources have no file bytes to hash, so they are never cached here.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from pipeline import __version__
from pipeline.data.cache import FORMAT_VERSION, enabled, tokenizer_fingerprint
from pipeline.data.sources import local_files
from pipeline.errors import DataError
from pipeline.files import write_json
from pipeline.models.assets import cache_dir

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from pipeline.config.schema import DataSpec

log = logging.getLogger(__name__)
READ_BYTES = 1 << 24  # 16 MiB per read while hashing a data file


class Deferred(Sequence[Any]):
    """A list of known length whose items are loaded (all at once) on first access."""

    def __init__(self, length: int, load: Callable[[], list[Any]]) -> None:
        self._length, self._load, self._items = length, load, None

    def _get(self) -> list[Any]:
        if self._items is None:
            self._items = self._load()
        return self._items

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> Any:
        return self._get()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._get())


def _file_digest(path: Path) -> str:
    digest = xxhash.xxh3_128()
    with path.open("rb") as handle:
        while block := handle.read(READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def prepared_key(data: DataSpec, tokenizer: PreTrainedTokenizerBase, options: dict[str, Any]) -> str | None:
    """The key of this preparation, or None when it cannot be cached (cache off, a Hub or saved source)."""
    if not enabled():
        return None
    digest = hashlib.sha256()
    settings = {
        "pipeline": __version__,
        "format": FORMAT_VERSION,
        "data": data.model_dump(mode="json"),
        **options,
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(tokenizer_fingerprint(tokenizer).encode())
    for source in [*data.train, *data.eval]:
        try:
            files = local_files(data, source)
        except DataError:  # reported by the real read, with its fix
            return None
        if not files or any(p.is_dir() for p in files):
            return None
        for path in files:
            digest.update(f"{path}\n{_file_digest(path)}\n".encode())
    return digest.hexdigest()[:32]


def _entry(key: str) -> Path:
    return cache_dir() / "prepared" / f"{key}.json"


def dataset_folder(dataset: Dataset | None) -> str | None:
    """The folder a cached (memory-mapped) dataset was loaded from, or None for an in-memory one."""
    files = getattr(dataset, "cache_files", None) or []
    return str(Path(files[0]["filename"]).parent) if files else None


def load_prepared(key: str | None) -> dict[str, Any] | None:
    """The entry stored under key with its datasets loaded (`train`, `eval`), or None."""
    from datasets import load_from_disk

    if key is None or not _entry(key).is_file():
        return None
    try:
        entry = json.loads(_entry(key).read_text(encoding="utf-8"))
        entry["train"] = load_from_disk(entry["train_folder"])
        entry["eval"] = load_from_disk(entry["eval_folder"]) if entry["eval_folder"] else None
    except (OSError, ValueError, KeyError) as exc:  # a damaged or stale entry is rebuilt, never trusted
        log.warning("Ignoring the prepared-data cache entry %s (%s).", key, exc)
        return None
    return entry


def store_prepared(key: str | None, entry: dict[str, Any]) -> None:
    """Write the entry (JSON-serialisable values and the two dataset folders) under key; atomic."""
    if key is None or not entry.get("train_folder"):
        return
    path = _entry(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, entry)
    except OSError as exc:
        log.warning("Could not write the prepared-data cache %s (%s); continuing without it.", path, exc)
