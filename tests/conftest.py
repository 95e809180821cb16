"""Shared fixtures: a tiny BPE tokenizer with a ChatML template and a tiny random Llama, built offline."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from patch_state import leaked_patches

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# An unexpected exception fails its test with the traceback (the CLI would log it and print one line).
os.environ.setdefault("PIPELINE_TRACEBACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(autouse=True)
def no_patch_left_behind() -> Any:
    """Fail a test that leaves a library patched (every speed lever must restore what it changed)."""
    yield
    leaked = leaked_patches()
    assert not leaked, "patched library state left behind: " + "; ".join(leaked)


CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "What does json.dumps do? It serializes an object to a JSON formatted string.",
    "Explain os.path.join in Python. It joins one or more path segments intelligently.",
    "The quick brown fox jumps over the lazy dog. Hello world, how are you today?",
    "user assistant system: answer questions about the Python standard library briefly and well.",
]
CONVERSATIONS = [
    [
        {"role": "user", "content": "What does json.dumps do?"},
        {"role": "assistant", "content": "It serializes an object to a JSON string."},
    ],
    [
        {"role": "user", "content": "Explain os.path.join."},
        {"role": "assistant", "content": "It joins path segments."},
        {"role": "user", "content": "Which module?"},
        {"role": "assistant", "content": "The os.path module."},
    ],
    [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "Fine, thank you."},
    ],
    [
        {"role": "user", "content": "What is the quick brown fox?"},
        {"role": "assistant", "content": "It jumps over the lazy dog."},
    ],
]


def build_tiny_tokenizer(
    template: str | None = CHATML, specials: list[str] | None = None, **tokens: Any
) -> Any:
    """A ~300-token BPE tokenizer trained on a few sentences; ChatML special tokens unless `specials` and the
    special-token names (`tokens`: unk_token, eos_token, ...) say otherwise; no chat template when None."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = specials or ["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tokens = tokens or {
        "unk_token": "<unk>",
        "eos_token": "<|im_end|>",
        "bos_token": "<|im_start|>",
        "pad_token": "<pad>",
    }
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **tokens)
    if template is not None:
        tokenizer.chat_template = template
    return tokenizer


def build_tiny_model(vocab_size: int, seed: int = 0, hidden_size: int = 32, layers: int = 2) -> Any:
    """A small Llama (default: 2 layers, hidden size 32) with random weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=hidden_size // 8,
        num_key_value_heads=hidden_size // 16,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(autouse=True)
def own_base_metrics_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own cache of base-model metrics (pipeline.evaluation.base_cache): none reuses another's."""
    monkeypatch.setenv("PIPELINE_BASE_CACHE", str(tmp_path_factory.mktemp("base-metrics")))


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Any:
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    """A saved tiny model folder (safetensors, tokenizer, chat template) usable as model.name in recipes."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    model = build_tiny_model(len(tiny_tokenizer))
    model.generation_config.eos_token_id = tiny_tokenizer.eos_token_id
    model.generation_config.pad_token_id = tiny_tokenizer.pad_token_id
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_model(tiny_model_dir: Path) -> Any:
    """A fresh copy of the tiny model, loaded from its folder."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def write_jsonl(path: Path, records: list[Any]) -> Path:
    """Write records as JSON lines and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_chat_files(folder: Path) -> tuple[Path, Path]:
    """Small train/eval JSONL files in messages format under folder."""
    train = write_jsonl(folder / "train.jsonl", [{"messages": m} for m in CONVERSATIONS * 6])
    evaluation = write_jsonl(folder / "eval.jsonl", [{"messages": m} for m in CONVERSATIONS])
    return train, evaluation


@pytest.fixture
def chat_files(tmp_path: Path) -> tuple[Path, Path]:
    """Small train/eval JSONL files in messages format."""
    return write_chat_files(tmp_path / "data")


def write_tiny_recipe(
    path: Path, model_dir: Path, files: tuple[Path, Path], output_dir: Path, /, **sections: dict[str, Any]
) -> Path:
    """Write a recipe YAML for the tiny model to path; keyword sections are merged over the defaults."""
    train, evaluation = files
    recipe: dict[str, Any] = {
        "description": "tiny test recipe",
        "model": {"name": str(model_dir), "dtype": "float32"},
        "adapter": {"r": 4, "alpha": 8, "dropout": 0.0},
        # The tiny eval set repeats training conversations on purpose (fast, deterministic checks).
        "data": {"train": str(train), "eval": str(evaluation), "allow_contamination": True},
        "train": {
            "max_length": 64,
            "max_steps": 3,
            "batch_size": 2,
            "learning_rate": 1e-2,
            "logging_steps": 1,
            "save_steps": 100,
            "report_to": ["none"],
            "output_dir": str(output_dir),
        },
        "eval": {"max_examples": 4, "generate_examples": 0, "max_new_tokens": 8, "batch_size": 4},
    }
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


@pytest.fixture
def make_recipe(tmp_path: Path, tiny_model_dir: Path, chat_files: tuple[Path, Path]) -> Callable[..., Path]:
    """Write a recipe YAML for the tiny model under tmp_path; keyword sections are merged over the defaults."""

    def _make(name: str = "tiny", **sections: dict[str, Any]) -> Path:
        return write_tiny_recipe(
            tmp_path / f"{name}.yaml", tiny_model_dir, chat_files, tmp_path / "runs", **sections
        )

    return _make


@pytest.fixture
def tiny_trainer(
    make_recipe: Callable[..., Path], tiny_model_dir: Path, tiny_tokenizer: Any
) -> Callable[..., Any]:
    """Build, as finetune does (pipeline.train.stages), the trainer of a tiny recipe whose train section is
    merged over the defaults, over `rows` copies of one 5-token example with its last 3 tokens trained."""

    def _build(rows: int = 2, **train: Any) -> Any:
        from datasets import Dataset
        from transformers import AutoModelForCausalLM

        from pipeline.config.loader import load_recipe
        from pipeline.train.stages.build import build_trainer

        path = make_recipe(train=train)
        recipe = load_recipe(str(path), ["train.report_to=[none]"])
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        data = Dataset.from_dict(
            {"input_ids": [[4, 5, 6, 7, 8]] * rows, "assistant_masks": [[0, 0, 1, 1, 1]] * rows}
        )
        return build_trainer(recipe, path.parent / "run", model, tiny_tokenizer, data, None)

    return _build


def run_cli(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int | str | None, str]:
    """Run `pipeline ARGV` through pipeline.cli.app.main in this process: its exit code and its stderr."""
    import sys

    from pipeline.cli.app import main

    monkeypatch.setattr(sys, "argv", ["pipeline", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err
