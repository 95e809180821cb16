"""`pipeline serve --engine vllm`: the command line vLLM gets, what it refuses, and a missing environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from pipeline.errors import AssetError, PipelineError
from pipeline.inference.vllm_server import require_vllm_env, vllm_launch
from pipeline.models.serving import max_lora_rank, vllm_problems

LORA = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "bias": "none"}


def _adapter(folder: Path, base: Path, tokenizer: Any, **config: Any) -> Path:
    """An adapter folder as a run saves it (config and the base's tokenizer; no weights needed here)."""
    from transformers import AutoTokenizer

    folder.mkdir()
    settings = LORA | {"base_model_name_or_path": str(base)} | config
    (folder / "adapter_config.json").write_text(json.dumps(settings))
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)  # not the session fixture: tests change it
    return folder


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_an_adapter_is_served_as_lora_on_its_base(
    tmp_path: Path, tiny_model_dir: Path, tiny_tokenizer: Any
) -> None:
    tuned = _adapter(tmp_path / "tuned", tiny_model_dir, tiny_tokenizer)
    other = _adapter(tmp_path / "other", tiny_model_dir, tiny_tokenizer, r=24, rank_pattern={"q_proj": 40})
    launch = vllm_launch(str(tuned), {"other": str(other)}, api_key="sk-secret", dtype="float32", port=8123)
    argv = launch.argv
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert _flag(argv, "--model") == str(tiny_model_dir) and _flag(argv, "--host") == "127.0.0.1"
    assert _flag(argv, "--port") == "8123" and _flag(argv, "--dtype") == "float32"
    assert _flag(argv, "--max-lora-rank") == "64"  # rank_pattern's 40, rounded up to a rank vLLM takes
    assert argv[argv.index("--lora-modules") + 1 :][:2] == [f"tuned={tuned}", f"other={other}"]
    assert _flag(argv, "--tokenizer") == str(tiny_model_dir)  # the same vocabulary: the base's folder
    template = Path(_flag(argv, "--chat-template"))
    assert template.read_text(encoding="utf-8") == tiny_tokenizer.chat_template
    assert launch.served == [tiny_model_dir.name, "tuned", "other"]
    assert launch.env["VLLM_API_KEY"] == "sk-secret" and "sk-secret" not in launch.shown()
    assert launch.env["VLLM_CPU_KVCACHE_SPACE"] and launch.env["VLLM_CACHE_ROOT"]


def test_a_run_tokenizer_with_other_special_tokens_is_served(
    tmp_path: Path, tiny_model_dir: Path, tiny_tokenizer: Any
) -> None:
    tuned = _adapter(tmp_path / "tuned", tiny_model_dir, tiny_tokenizer)
    config = json.loads((tuned / "tokenizer_config.json").read_text())
    (tuned / "tokenizer_config.json").write_text(json.dumps(config | {"eos_token": "<pad>"}))
    assert _flag(vllm_launch(str(tuned), {}).argv, "--tokenizer") == str(tuned)


def test_a_whole_model_is_served_without_lora(tiny_model_dir: Path) -> None:
    launch = vllm_launch(str(tiny_model_dir), {}, name="plain", context_length=256, extra="--enforce-eager")
    assert "--enable-lora" not in launch.argv and launch.served == ["plain"]
    assert _flag(launch.argv, "--max-model-len") == "256" and launch.argv[-1] == "--enforce-eager"
    assert "VLLM_API_KEY" not in launch.env


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"r": 1024}, "above vLLM's largest"),
        ({"target_modules": ["q_proj", "wte_custom"]}, "wte_custom"),
        ({"bias": "lora_only"}, "biases"),
    ],
)
def test_what_vllm_refuses_is_named_with_the_merge_fix(
    tmp_path: Path, tiny_model_dir: Path, tiny_tokenizer: Any, config: dict[str, Any], words: str
) -> None:
    assert any(words in p for p in vllm_problems(LORA | config))
    folder = _adapter(tmp_path / "odd", tiny_model_dir, tiny_tokenizer, **config)
    with pytest.raises(AssetError, match="pipeline merge") as info:
        vllm_launch(str(folder), {})
    assert words in str(info.value) and "\n" not in str(info.value)


def test_accepted_ranks_and_a_plain_adapter_has_no_problems() -> None:
    assert [max_lora_rank(r) for r in (1, 2, 8, 9, 16, 300, 512, 513)] == [1, 8, 8, 16, 16, 320, 512, None]
    assert vllm_problems(LORA) == []
    assert vllm_problems(LORA | {"target_modules": ["model.layers.0.self_attn.q_proj", "lm_head"]}) == []


def test_no_vllm_environment_is_one_line_naming_make_vllm_env(
    tmp_path: Path,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PIPELINE_VLLM_ENV", str(tmp_path / "absent"))
    with pytest.raises(PipelineError, match="make vllm-env"):
        require_vllm_env()
    monkeypatch.setenv("PIPELINE_TRACEBACK", "0")
    code, err = run_cli(["serve", str(tiny_model_dir), "--engine", "vllm"], monkeypatch, capsys)
    assert code != 0 and "make vllm-env" in err and "absent" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
