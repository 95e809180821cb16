"""manifest.json as a typed record: what a run was (recipe, inputs, environment) and how to run it again.

`pipeline.train.manifest` builds and writes it; everything that reads one goes through `Manifest.read`.
Older formats are read as they are (format 1: a `format` key instead of `schema_version`), never rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import RecipeError

MANIFEST = "manifest.json"
SCHEMA_VERSION = 2  # 1: the `format: 1` files written before the typed record (2026-12)


class Section(BaseModel):
    """A part of a run record: known fields typed, fields of newer writers kept as they are."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


def read_json(path: Path, missing: str, unreadable: str, fix: str) -> Any:
    """A run file's JSON content; a one-line RecipeError naming the file when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"{path}: {missing}; {fix}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecipeError(f"{path}: {unreadable} ({exc}); {fix}.") from None


def first_problem(exc: ValidationError) -> str:
    """'key.path: what is wrong' of a validation error's first problem."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "top level"
    return f"{where}: {first['msg']}"


class DataFile(Section):
    split: str
    source: str
    path: str | None = None  # None: a Hub data set (source is its id)
    revision: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    mtime_ns: int | None = None  # streamed training files: size and modification time instead of a hash
    streamed: bool = False

    def stamp(self) -> Any:
        """What tells this file's content: its SHA-256, or a streamed file's size and modification time."""
        return self.sha256 or (self.bytes, self.mtime_ns)


class DataInfo(Section):
    files: list[DataFile] = Field(default_factory=list)
    records: dict[str, int | str] = Field(default_factory=dict)  # "streamed" for a stream's train split
    skipped: dict[str, int] = Field(default_factory=dict)


class TokenizerInfo(Section):
    class_name: str | None = Field(None, alias="class")
    vocab_size: int | None = None
    sha256: str | None = None
    chat_template_sha256: str | None = None


class ModelInfo(Section):
    name: str
    revision: str | None = None
    commit: str | None = None
    folder: str | None = None
    files_sha256: dict[str, str] = Field(default_factory=dict)
    sha256: str | None = None


class ParentInfo(Section):
    adapter: str  # what model.adapter named
    adapter_dir: str
    run: str | None = None  # the parent's run folder, when it is a run of this tool
    sha256: str
    recipe_name: str | None = None


class Environment(Section):
    python: str | None = None
    torch: str | None = None
    cuda: str | None = None
    device: str | None = None
    device_count: int = 1
    world_size: int = 1
    platform: str | None = None
    packages: dict[str, str | None] = Field(default_factory=dict)


class Times(Section):
    started: str
    finished: str | None = None
    seconds: dict[str, float] = Field(default_factory=dict)


class Manifest(Section):
    schema_version: int = SCHEMA_VERSION
    recipe_name: str
    recipe_path: str | None = None
    recipe: dict[str, Any]
    recipe_sha256: str | None = None
    data: DataInfo = Field(default_factory=DataInfo)
    tokenizer: TokenizerInfo = Field(default_factory=TokenizerInfo)
    model: ModelInfo
    parent: ParentInfo | None = None
    environment: Environment = Field(default_factory=Environment)
    seeds: dict[str, int] = Field(default_factory=dict)
    command: list[str] = Field(default_factory=list)
    cwd: str | None = None
    git: dict[str, Any] | None = None
    times: Times
    resumed: list[dict[str, Any]] = Field(default_factory=list)
    resumed_from: dict[str, Any] | None = None
    rerun_of: dict[str, Any] | None = None
    speed_levers: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _older_formats(cls, data: Any) -> Any:
        if isinstance(data, dict) and "schema_version" not in data and data.get("format") == 1:
            data = {key: value for key, value in data.items() if key != "format"}
            data["schema_version"] = 1
        return data

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """A manifest.json (or the one inside a run folder), with one-line errors."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        data = read_json(path, "no such manifest", "not a readable manifest", "give runs/<run>/manifest.json")
        if not isinstance(data, dict) or not ("schema_version" in data or data.get("format") == 1):
            raise RecipeError(f"{path}: not a pipeline manifest (no schema_version, no format 1).")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RecipeError(
                f"{path}: {first_problem(exc)}; not a manifest this version can read."
            ) from None

    def to_json(self) -> dict[str, Any]:
        """The manifest as written to manifest.json: the keys it was given or assigned, named as in the file."""
        return {
            "schema_version": self.schema_version,
            **self.model_dump(mode="json", by_alias=True, exclude_unset=True),
        }
