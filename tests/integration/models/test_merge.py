"""`pipeline merge`: dtype, output folders, atomicity, refusals and the CLI, on one trained tiny LoRA run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONVERSATIONS, write_jsonl
from safetensors import safe_open
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.config.loader import load_recipe
from pipeline.data.splits import load_splits
from pipeline.data.tokenize import tokenize_records
from pipeline.errors import AssetError, RecipeError
from pipeline.models.loading import load_base_model, load_tokenizer
from pipeline.models.merge import merge_run
from pipeline.models.saving import save_adapter
from pipeline.train.stages.build import build_trainer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A finished 3-step LoRA run of the tiny model, shared by the tests (copy it before changing it)."""
    root = tmp_path_factory.mktemp("merge-run")
    data = write_jsonl(root / "train.jsonl", [{"messages": m} for m in CONVERSATIONS * 6])
    recipe = {
        "model": {"name": str(tiny_model_dir), "dtype": "float32"},
        "adapter": {"r": 4, "alpha": 8, "dropout": 0.0},
        "data": {"train": str(data)},
        "train": {
            "max_length": 64,
            "max_steps": 3,
            "batch_size": 2,
            "learning_rate": 1e-2,
            "save_steps": 100,
            "report_to": ["none"],
            "output_dir": str(root / "runs"),
        },
        "eval": {"enabled": False},
    }
    (root / "tiny.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    loaded = load_recipe(str(root / "tiny.yaml"))
    run = root / "runs" / "tiny-run"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(
        yaml.safe_dump(loaded.to_dict()), encoding="utf-8"
    )  # what finetune writes
    tokenizer = load_tokenizer(loaded.model)
    dataset = tokenize_records(load_splits(loaded.data).train, tokenizer, loaded.train)
    trainer = build_trainer(loaded, run, load_base_model(loaded.model), tokenizer, dataset, None)
    trainer.train()
    save_adapter(trainer.model, tokenizer, run / "adapter", save=trainer.save_model)
    return run


def _dtypes(folder: Path) -> set[torch.dtype]:
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        return {handle.get_tensor(name).dtype for name in handle.keys()}  # noqa: SIM118


def test_bf16_merge_writes_a_plain_bf16_model(run_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    result = merge_run(str(run_dir), tmp_path / "bf16", dtype="bfloat16")
    assert result.dtype == "bfloat16" and 0.0 < result.reload_max_abs_diff < 2e-2  # bf16 rounding, no more
    assert _dtypes(result.output) == {torch.bfloat16}
    model = AutoModelForCausalLM.from_pretrained(result.output)
    assert model.dtype == torch.bfloat16
    report = json.loads((run_dir / "merge.json").read_text())
    assert report["output"] == str(tmp_path / "bf16") and report["dtype"] == "bfloat16"


def test_failed_merge_keeps_the_previous_folder(run_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "merged"
    output.mkdir()
    (output / "keep.txt").write_text("good merge")
    with pytest.raises(AssetError) as info:
        merge_run(str(run_dir), output, tolerance=-1.0)  # no difference can pass a negative tolerance
    message = str(info.value)
    assert (
        "\n" not in message and "differ from base + adapter" in message and "nothing was written" in message
    )
    assert [p.name for p in output.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["merged"], "temporary folders left behind"

    merge_run(str(run_dir), output)
    assert (output / "model.safetensors").is_file() and not (output / "keep.txt").exists()


def test_bare_adapter_folder_merges_beside_itself(run_dir: Path, tmp_path: Path) -> None:
    adapter = shutil.copytree(run_dir / "adapter", tmp_path / "my-adapter")
    result = merge_run(str(adapter))
    assert result.output == tmp_path / "my-adapter-merged" and (result.output / "config.json").is_file()
    assert result.relative_diff <= result.relative_tolerance


def test_refusals_are_one_line(run_dir: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(RecipeError, match=r"^--dtype float8: not one of auto, float32, bfloat16, float16\.$"):
        merge_run(str(run_dir), dtype="float8")
    with pytest.raises(AssetError, match="already a full model with no adapter; there is nothing to merge"):
        merge_run(str(tiny_model_dir))


def test_cli_merge_reports_the_difference(run_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["merge", str(run_dir), "--output", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'cli'}: merged (float32); max |logit diff| vs base + adapter" in result.output
    assert (
        "reloads with identical weights (float32 rounding moves logits by 0.0e+00)" in result.output
        and (tmp_path / "cli" / "model.safetensors").is_file()
    )


def test_weight_comparison_names_the_tensor_that_changed(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from pipeline.models.merge import _differing_weights

    saved, reloaded = (AutoModelForCausalLM.from_pretrained(tiny_model_dir) for _ in range(2))
    assert _differing_weights(saved, reloaded) == []
    with torch.no_grad():
        reloaded.model.norm.weight[0] += 1e-3
    assert _differing_weights(saved, reloaded) == ["model.norm.weight"]


def test_a_bf16_run_merges_checked_in_float32(run_dir: Path, tmp_path: Path) -> None:
    """A run trained on bf16 weights (model.dtype native/bfloat16, as lora-small here) merges: the check compares
    the merge arithmetic in float32, not the bf16 run's own rounding against an fp32 merge."""
    import shutil

    run = shutil.copytree(run_dir, tmp_path / "bf16-run")
    recipe = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
    recipe["model"]["dtype"] = "bfloat16"
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = merge_run(str(run), tmp_path / "merged")
    assert result.dtype == "bfloat16"  # saved as the run's dtype
    assert result.relative_diff < 1e-5  # fp32 base + adapter vs the fp32 merge: exact up to summation order
