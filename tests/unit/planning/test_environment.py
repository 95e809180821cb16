"""`pipeline env`: names the installed versions, judges each speed lever by its canary, never prints a token."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.planning import environment


@pytest.fixture(scope="module")
def report() -> dict:
    return environment.collect()


def test_text_names_the_versions_and_hides_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["env"])
    assert result.exit_code == 0, result.output
    out = result.output
    for name in ("transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "pipeline"):
        assert f"- {name}: {metadata.version(name)}\n" in out
    assert f"- torch: {torch.__version__}\n" in out
    assert "- offline: yes (HF_HUB_OFFLINE=1)" in out
    assert "HF_TOKEN set" in out
    assert "hf_secret" not in out


def test_json_carries_the_same_facts_without_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    result = CliRunner().invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    assert "hf_secret" not in result.output
    data = json.loads(result.output)
    assert data["versions"]["trl"] == metadata.version("trl")
    assert data["versions"]["python"].count(".") == 2
    assert data["hub"]["token"]["HF_TOKEN"] == "set"
    assert data["hub"]["offline"] is False
    assert data["cpu"]["native_bf16"] in (True, False)
    assert data["precision"]["auto"] in ("fp32", "bf16")
    assert set(data["speed_levers"]) == {
        "accelerate_fsdp_cpu",
        "bnb_cpu",
        "peft_lora",
        "torch_cpu",
        "trainer_sampler",
        "transformers_attention",
        "trl_lm_head",
        "trl_rollouts",
    }


def test_an_unset_token_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in environment.TOKEN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert environment.hub_report()["token"]["HF_TOKEN"] == "not set"


def test_every_lever_fits_the_installed_libraries(report: dict) -> None:
    for name, lever in report["speed_levers"].items():
        assert lever["status"] == "fits", f"{name}: {lever}"
    assert report["speed_levers"]["trl_lm_head"]["library"] == f"trl {metadata.version('trl')}"


def test_a_lever_whose_canary_fails_is_reported_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import trl.trainer.utils as trl_utils

    from pipeline.train.patches import bnb_cpu

    monkeypatch.delattr(trl_utils, "_use_triton")

    def broken() -> str | None:
        raise ImportError("no bitsandbytes here")

    monkeypatch.setattr(bnb_cpu, "canary", broken)
    levers = environment.speed_levers()
    assert levers["trl_lm_head"]["status"] == "off: trl.trainer.utils._use_triton is gone"
    assert levers["bnb_cpu"]["status"] == "off: ImportError: no bitsandbytes here"
    assert levers["torch_cpu"]["status"] == "fits"


def test_cpu_features_come_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Example Xeon 9000\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
        "processor\t: 1\nmodel name\t: Example Xeon 9000\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    )
    cpu = environment.cpu_report(cpuinfo)
    assert cpu["model"] == "Example Xeon 9000"
    assert cpu["features"] == {"AVX2": True, "AVX512F": True, "AVX512-BF16": True, "AMX": False}


def test_a_cpu_machine_says_no_gpu(report: dict) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert report["gpu"] == {"cuda": None, "devices": []}
    assert "- GPUs: none (CUDA not available)" in environment.to_text(report)


def test_the_endpoint_loses_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://user:pw-secret@127.0.0.1:8080/mirror")
    assert environment.hub_report()["endpoint"] == "http://127.0.0.1:8080/mirror"


def test_caches_name_the_tokenized_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    caches = environment.cache_report()
    assert caches["pipeline"] == str(tmp_path)
    assert caches["tokenized_data"] == str(tmp_path / "datasets")
