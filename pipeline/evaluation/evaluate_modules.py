"""Our metrics as local Hugging Face `evaluate` modules (pipeline/evaluation/modules/<name>/<name>.py),
opened offline with evaluate.load(path): answer_similarity and trained_token_perplexity."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

MODULES_DIR = Path(__file__).resolve().parent / "modules"


@lru_cache(maxsize=4)
def load_module(name: str) -> Any:
    """`evaluate.load` of one of our modules by name (a local folder: nothing is fetched)."""
    import evaluate

    return evaluate.load(str(MODULES_DIR / name), keep_in_memory=True)  # no cache files written
