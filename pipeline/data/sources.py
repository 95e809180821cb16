"""Read raw records of one data source: local files (JSONL, JSON, CSV, Parquet, text), folders, globs,
datasets saved with `save_to_disk`, and Hugging Face Hub dataset ids. Each record comes with its location
('file:line', 'file[row]' or 'hub-id[split]:row') so errors can point at it."""

from __future__ import annotations

import csv
import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.config.schema import DataSpec, SourceSpec
from pipeline.errors import DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt", ".md")
Located = tuple[str, Any]
PARQUET_BATCH = 1024  # rows decoded at a time


def _read_jsonl(path: Path, part: int = 0, parts: int = 1) -> Iterator[Located]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if (number - 1) % parts != part or not line.strip():
                continue  # another part's line (data.streaming): counted, never parsed
            try:
                yield f"{path}:{number}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}:{number}: invalid JSON ({exc.msg}); each line must be one JSON object."
                ) from None


def _read_json(path: Path) -> Iterator[Located]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); give a list of records.") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: a JSON data file must hold a list of records (or {{'data': [...]}}).")
    for index, record in enumerate(data):
        yield f"{path}[{index}]", record


def _read_csv(path: Path) -> Iterator[Located]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        _ = reader.fieldnames  # reads the header line, so line_num counts from it
        start = reader.line_num + 1
        for row in reader:
            yield f"{path}:{start}", row
            start = reader.line_num + 1


def _read_parquet(path: Path) -> Iterator[Located]:
    import pyarrow.parquet as pq

    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH):  # never the whole file at once
        for record in batch.to_pylist():
            yield f"{path}[{index}]", record
            index += 1


def _read_text(path: Path) -> Iterator[Located]:
    """Plain text for continued pre-training: one record per paragraph (blocks split by blank lines)."""
    block: list[str] = []
    first = 0
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate([*handle, "\n"], start=1):
            if line.strip():
                first = first or number
                block.append(line)
            elif block:
                yield f"{path}:{first}", {"text": "".join(block).strip()}
                block, first = [], 0


READERS = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".txt": _read_text,
    ".md": _read_text,
}


def _shown(path: Path) -> Path:
    """The path as errors show it: relative to the working folder when inside it."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def read_file(path: Path, part: int = 0, parts: int = 1) -> Iterator[Located]:
    """(location, record) pairs of one local file, chosen by its suffix; with parts > 1 only part `part` of
    them: every parts-th line (JSONL) or record (other types), starting at the part-th."""
    path = _shown(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported data file type; use one of {', '.join(SUFFIXES)}.")
    if reader is _read_jsonl:
        rows: Iterator[Located] = _read_jsonl(path, part, parts)
    else:
        rows = (row for n, row in enumerate(reader(path)) if n % parts == part)
    try:
        yield from rows
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; convert the file to UTF-8.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc}).") from None


def _read_saved(folder: Path, split: str) -> Iterator[Located]:
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(folder))
    if isinstance(data, DatasetDict):
        if split not in data:
            raise DataError(
                f"{folder}: no split '{split}' (splits: {', '.join(data)}); set data.train[].split."
            )
        data = data[split]
    for index, record in enumerate(data):
        yield f"{folder}[{split}]:{index}", record


def _is_offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    )


def read_hub(source: SourceSpec) -> Iterator[Located]:
    """Rows of a Hub dataset (config, split, revision) via datasets.load_dataset; cached ones work offline."""
    import datasets

    where = source.path + (f"/{source.config}" if source.config else "")
    try:
        data = datasets.load_dataset(source.path, source.config, split=source.split, revision=source.revision)
    except (ConnectionError, FileNotFoundError) as exc:
        if _is_offline():
            raise DataError(
                f"{where}: Hub data set not in the local cache and offline mode is on (HF_HUB_OFFLINE / "
                "HF_DATASETS_OFFLINE); load it once with network access, or point data.train at local files."
            ) from None
        raise DataError(f"{where}: cannot load the Hub data set ({str(exc).splitlines()[0]}).") from None
    except ValueError as exc:  # unknown split or config
        raise DataError(f"{where}: {str(exc).splitlines()[0]}; check data.train[].split / config.") from None
    for index, record in enumerate(data):
        yield f"{where}[{source.split}]:{index}", record


def local_files(data: DataSpec, source: SourceSpec) -> list[Path] | None:
    """The local files a source names (a file, a folder's data files, a glob), or None if it is not local."""
    pattern = data.resolve_path(source.path)
    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.name != "README.md")
    if path.is_file():
        return [path]
    if any(ch in pattern for ch in "*?["):
        matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not matches:
            raise DataError(f"{source.path}: the pattern matches no file; check data.train / data.eval.")
        return matches
    return None


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and Path(name).suffix.lower() not in SUFFIXES


def read_source(data: DataSpec, source: SourceSpec) -> Iterator[Located]:
    """(location, record) pairs of a source, with its column mapping applied."""
    folder = Path(data.resolve_path(source.path))
    if folder.is_dir() and (
        (folder / "dataset_dict.json").is_file() or (folder / "dataset_info.json").is_file()
    ):
        rows: Iterator[Located] = _read_saved(folder, source.split)
    else:
        files = local_files(data, source)
        if files is None:
            # 'data/trian' is a typo'd local folder, not the Hub id of user 'data', when ./data exists.
            local_parent = Path(data.resolve_path(source.path.split("/")[0])).is_dir()
            if local_parent or not _looks_like_hub_id(source.path):
                raise DataError(f"{source.path}: no such data file or folder; check data.train / data.eval.")
            rows = read_hub(source)
        elif not files:
            raise DataError(f"{source.path}: the folder holds no data file ({', '.join(SUFFIXES)}).")
        else:
            rows = (row for path in files for row in read_file(path))
    yield from renamed(source, rows)


def renamed(source: SourceSpec, rows: Iterator[Located]) -> Iterator[Located]:
    """The rows with the source's column mapping (data.train[].columns) applied."""
    for location, record in rows:
        if source.columns and isinstance(record, dict):
            record = {source.columns.get(k, k): v for k, v in record.items()}
        yield location, record
