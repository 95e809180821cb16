"""The documentation agrees with the code: the recipe reference is the schema's, the README's recipes validate,
its test command is CI's, key tables name real keys, links resolve, and figures come from bench/."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Literal

import pytest
import yaml
from pydantic import BaseModel, Field

from pipeline.config.schema import Recipe

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
RESULTS = ROOT / "bench" / "RESULTS.md"
MAIN_KEYS = (
    "learning_rate",
    "epochs",
    "grad_accum",
    "lr_scheduler",
    "save_steps",
    "eval_steps",
    "report_to",
    "attn_implementation",
)
# A measured figure: a number with a unit of speed, time, memory or a speed-up ratio.
FIGURE = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s?(?:tokens/s|GB|GiB|min\b|s\b|x\b)")


def _generator() -> ModuleType:
    path = ROOT / "scripts" / "build_recipe_reference.py"
    spec = importlib.util.spec_from_file_location("build_recipe_reference", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _schema_keys() -> set[str]:
    """Every `section.key` a recipe accepts, `[]` marking the keys of one data source."""
    return {key for key, *_ in _generator().rows(Recipe, "")}


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def _doc_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_recipe_reference_matches_the_schema() -> None:
    page = (DOCS / "recipe-reference.md").read_text(encoding="utf-8")
    assert page == _generator().build_page(), (
        "docs/recipe-reference.md disagrees with pipeline/config/schema.py: run `make docs`"
    )


class _Source(BaseModel):
    path: str = Field(description="Where.")


class _Inner(BaseModel):
    depth: int | None = Field(None, ge=2, description="How deep.")


class _Section(BaseModel):
    rate: float = Field(2e-4, gt=0, le=1, description="Peak  rate,\n  one | two.")
    kind: Literal["a", "b"] = Field("a", description="Which.")
    loggers: list[str] = Field(default_factory=lambda: ["tensorboard"], description="Loggers.")
    sources: list[_Source] = Field(description="Data.")
    inner: _Inner = Field(default_factory=_Inner, description="Nested.")


def test_generator_rows_give_type_default_and_description() -> None:
    rows = {key: rest for key, *rest in _generator().rows(_Section, "train.")}
    assert rows == {
        "train.rate": ["float (> 0, <= 1)", "`0.0002`", "Peak  rate,\n  one | two."],
        "train.kind": ["one of: `a`, `b`", "`a`", "Which."],
        "train.loggers": ["list of str", '`["tensorboard"]`', "Loggers."],
        "train.sources": ["list of sources", "*required*", "Data."],
        "train.sources[].path": ["str", "*required*", "Where."],
        "train.inner": ["mapping (keys below)", "(keys below)", "Nested."],
        "train.inner.depth": ["int or null (>= 2)", "`null`", "How deep."],
    }
    row = _generator()._row(("train.rate", *rows["train.rate"]))
    assert row == "| `train.rate` | float (> 0, <= 1) | `0.0002` | Peak rate, one \\| two. |"


def test_reference_lists_every_schema_key() -> None:
    page = (DOCS / "recipe-reference.md").read_text(encoding="utf-8")
    for section in ("model", "adapter", "data", "train", "eval", "hub"):
        assert f"\n## {section}\n" in page
        for name in Recipe.model_fields[section].annotation.model_fields:
            assert f"| `{section}.{name}` |" in page, f"{section}.{name} missing: run `make docs`"


def test_readme_opens_with_the_two_setup_commands_and_ci_runs_its_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    first = _code_blocks(text, "bash")[0]
    commands = [line.split("#")[0].strip() for line in first.splitlines()]
    assert commands == ["make finetune", "make test"]
    assert text.index("```bash") < text.index("\n## "), "the set-up commands come before any section"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1].strip() == "make test", ".ci/run must end with the README's test command"


def test_readme_is_short_and_shows_the_main_keys() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    for key in MAIN_KEYS:
        assert re.search(rf"^\s+{key}:", text, re.M), f"README's example recipe lacks {key}"
    assert "](docs/recipe-reference.md)" in text
    for page in ("install", "data", "evaluation", "hub", "serving", "performance", "coming-from"):
        assert f"](docs/{page}.md)" in text, f"README does not link docs/{page}.md"


def test_readme_recipes_validate_against_the_schema() -> None:
    blocks = _code_blocks(README.read_text(encoding="utf-8"), "yaml")
    assert len(blocks) >= 2
    recipes = [Recipe.model_validate(yaml.safe_load(block)) for block in blocks]
    assert recipes[0].data.train[0].path == "my-data.jsonl"
    assert recipes[1].train.grad_accum == 2 and recipes[1].model.attn_implementation == "sdpa"


def _coming_from_rows() -> list[list[str]]:
    lines = (DOCS / "coming-from.md").read_text(encoding="utf-8").splitlines()
    table = [line for line in lines if line.startswith("| ")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[:5] == ["what", "axolotl", "LLaMA-Factory", "TRL / peft", "ours"]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table[1:]]


def test_coming_from_names_only_real_keys() -> None:
    keys = _schema_keys()
    rows = _coming_from_rows()
    assert len(rows) >= 40
    for row in rows:
        ours = row[4]
        named = [k.split(":")[0].strip() for k in re.findall(r"`([^`]+)`", ours)]
        assert named or ours == "*not available*", f"row {row[0]!r}: ours is a key or *not available*"
        unknown = [k for k in named if k not in keys]
        assert not unknown, f"docs/coming-from.md row {row[0]!r} names keys the schema lacks: {unknown}"


def test_coming_from_covers_the_usual_keys() -> None:
    spans = {
        span.split(":")[0].strip()
        for row in _coming_from_rows()
        for span in re.findall(r"`([^`]+)`", " ".join(row[1:4]))
    }
    names = spans | {span.removeprefix("SFTConfig.").removeprefix("LoraConfig.") for span in spans}
    usual = ["base_model", "lora_r", "lora_target_modules", "sequence_len", "micro_batch_size", "num_epochs"]
    usual += ["sample_packing", "load_in_4bit", "datasets[].path", "val_set_size", "model_name_or_path"]
    usual += ["finetuning_type", "lora_rank", "cutoff_len", "template", "quantization_bit", "max_length"]
    usual += ["assistant_only_loss", "packing"]
    missing = [key for key in usual if key not in names]
    assert not missing


@pytest.mark.parametrize("page", _doc_pages(), ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name}: link to {target} does not resolve"


def test_stale_token_figures_are_gone() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in _doc_pages())
    for stale in ("12-14 tokens/s", "12–14 tokens/s", "≈ 35 min", "35 min"):
        assert stale not in text


# install.md quotes settings and test-suite durations (seconds of a timeout), not benchmark figures.
@pytest.mark.parametrize("page", [p for p in _doc_pages() if p.name != "install.md"], ids=lambda p: p.name)
def test_figures_come_from_bench(page: Path) -> None:
    """A measured figure is in bench/RESULTS.md, or its paragraph names the bench script that printed it."""
    results = RESULTS.read_text(encoding="utf-8")
    paragraphs = re.split(r"\n\s*\n", page.read_text(encoding="utf-8"))
    for before, paragraph in zip(["", *paragraphs], paragraphs, strict=False):
        if re.search(r"bench/\w+\.py", before + paragraph):
            continue  # a table, or the paragraph just above it, names the script that printed its figures
        for number in FIGURE.findall(paragraph):
            assert re.search(rf"(?<![\d.,]){re.escape(number)}(?![\d]|\.\d)", results), (
                f"{page.name}: figure {number!r} is neither in bench/RESULTS.md nor next to a bench/ command:\n"
                f"{paragraph[:300]}"
            )
