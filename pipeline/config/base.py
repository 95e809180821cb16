"""What every recipe section shares: the strict, frozen pydantic base, the sanity bounds and path resolution."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from pipeline.files import path_exists


def resolve_beside(relative: str, folder: Path | None) -> str:
    """A path as given if it exists (or is absolute), else relative to `folder` (a recipe file's folder)."""
    if Path(relative).is_absolute() or folder is None or path_exists(relative):
        return relative
    candidate = folder / relative
    return str(candidate) if path_exists(candidate) or any(ch in relative for ch in "*?[") else relative


# Upper bounds that catch typos (`max_length: 1e20`) without limiting any real run.
MAX_TOKENS = 1 << 20  # tokens per example or window
MAX_COUNT = 10**9  # steps, records, examples
MAX_BATCH = 1 << 16  # examples per micro-batch, micro-batches per step
MAX_SEED = 2**32 - 1


class Spec(BaseModel):
    """Base for every recipe section: frozen, unknown keys rejected, strict types (`yes` is not 1, `"8"` is
    not 8), finite numbers only."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, protected_namespaces=(), strict=True, allow_inf_nan=False
    )
