"""Bad recipes, data files, CLI arguments and environment through the real entry point (pipeline.cli.app.main):
each gives one `error:` line naming the file/field/line, a non-zero exit, no traceback, and writes nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CONVERSATIONS, run_cli, write_jsonl

GOOD = [{"messages": m} for m in CONVERSATIONS]


@dataclass
class Ctx:
    """Builds bad inputs inside tmp_path."""

    tmp: Path
    make_recipe: Callable[..., Path]
    model_dir: Path

    def recipe(self, **sections: Any) -> str:
        # The tiny eval set repeats training conversations; allow that so each case fails for its own reason.
        data = sections.get("data", {})
        if isinstance(data, dict):
            sections["data"] = {"allow_contamination": True, **data}
        return str(self.make_recipe(**sections))

    def yaml_text(self, text: str) -> str:
        path = self.tmp / "bad.yaml"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def raw_recipe(self, data: Any) -> str:
        return self.yaml_text(yaml.safe_dump(data))

    def data(self, content: bytes | list[Any], name: str = "bad.jsonl") -> str:
        path = self.tmp / "data" / name
        if isinstance(content, bytes):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        else:
            write_jsonl(path, content)
        return self.recipe(data={"train": str(path), "eval": str(self.tmp / "data" / "eval.jsonl")})

    def folder(self, name: str) -> Path:
        folder = self.tmp / name
        folder.mkdir(exist_ok=True)
        return folder

    def manifest(self, text: str) -> str:
        path = self.folder("old-run") / "manifest.json"
        path.write_text(text, encoding="utf-8")
        return str(path)


def _turns(*pairs: tuple[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


# id -> (argv after `pipeline`, built from a Ctx; fragment the error line must contain)
CASES: dict[str, tuple[Callable[[Ctx], list[str]], str]] = {
    # recipes: unknown keys, wrong types, out-of-range values, conflicts, missing files
    "unknown-section": (
        lambda c: ["validate", c.recipe(modle={"name": "x"})],
        "unknown key 'modle'; did you mean 'model'?",
    ),
    "unknown-field": (
        lambda c: ["validate", c.recipe(train={"learnig_rate": 1})],
        "unknown key 'train.learnig_rate'; did you mean 'learning_rate'?",
    ),
    # the trl/peft cross-check: every command that builds a trainer (or plans one) asks it before loading
    **{
        f"lm-head-lora-{command}": (
            lambda c, command=command: [command, c.recipe(adapter={"target_modules": ["q_proj", "lm_head"]})],
            "rejected by trl/peft: adapter.target_modules includes lm_head",
        )
        for command in ("validate", "plan", "tokens", "finetune")
    },
    "wrong-type-int": (lambda c: ["validate", c.recipe(train={"batch_size": "eight"})], "train.batch_size:"),
    "wrong-type-bool": (lambda c: ["validate", c.recipe(train={"packing": "sometimes"})], "train.packing:"),
    "wrong-type-section": (lambda c: ["validate", c.recipe(train=5)], "train:"),
    "rank-zero": (
        lambda c: ["validate", c.recipe(adapter={"r": 0})],
        "adapter.r: Input should be greater than 0 (got 0)",
    ),
    "dropout-too-big": (lambda c: ["validate", c.recipe(adapter={"dropout": 1.5})], "adapter.dropout:"),
    "max-steps-zero": (lambda c: ["validate", c.recipe(train={"max_steps": 0})], "max_steps must be -1"),
    "bad-dtype": (lambda c: ["validate", c.recipe(model={"dtype": "float64"})], "model.dtype:"),
    "warmup-ratio": (lambda c: ["validate", c.recipe(train={"warmup_ratio": 2})], "train.warmup_ratio:"),
    "bad-scheduler": (
        lambda c: ["validate", c.recipe(train={"lr_scheduler": "wobble"})],
        "wobble is not a valid SchedulerType",
    ),
    "push-without-repo": (lambda c: ["validate", c.recipe(hub={"push": True})], "set hub.repo_id"),
    "full-ft-on-4bit": (
        lambda c: ["validate", c.recipe(adapter={"method": "full"}, model={"quantization": "4bit"})],
        "adapter.method full",
    ),
    "loftq-init": (lambda c: ["validate", c.recipe(adapter={"init": "loftq"})], "adapter.init 'loftq'"),
    "yaml-syntax": (
        lambda c: ["validate", c.yaml_text("model:\n  name: [unclosed\ntrain: {}\n")],
        "bad.yaml:3: invalid YAML",
    ),
    "not-a-mapping": (lambda c: ["validate", c.yaml_text("- just\n- a list\n")], "must be a YAML mapping"),
    "empty-recipe": (lambda c: ["validate", c.yaml_text("")], "data is required"),
    "missing-recipe-file": (
        lambda c: ["validate", str(c.tmp / "nope.yaml")],
        "nope.yaml: recipe file not found",
    ),
    "unknown-recipe-name": (lambda c: ["validate", "lora-smal"], "Did you mean 'lora-small'?"),
    "override-without-equals": (
        lambda c: ["validate", c.recipe(), "train.max_steps"],
        "not of the form section.field=value",
    ),
    "override-unknown-key": (lambda c: ["validate", c.recipe(), "train.nope=1"], "unknown key 'train.nope'"),
    "override-wrong-type": (lambda c: ["validate", c.recipe(), "train.epochs=abc"], "train.epochs:"),
    "missing-chat-template": (
        lambda c: ["finetune", c.recipe(model={"chat_template": str(c.tmp / "none.jinja")})],
        "none.jinja' not found",
    ),
    "model-path-empty-folder": (
        lambda c: ["finetune", c.recipe(model={"name": str(c.folder("empty"))})],
        "empty: folder holds no config.json",
    ),
    "model-path-missing": (
        lambda c: ["finetune", c.recipe(model={"name": str(c.tmp / "no-model")})],
        "no-model: no such model folder",
    ),
    "model-folder-without-weights": (
        lambda c: ["finetune", c.recipe(model={"name": str(_config_only(c))})],
        "config-only",
    ),
    "unknown-target-module": (
        lambda c: ["finetune", c.recipe(adapter={"target_modules": ["nonexistent_proj"]})],
        "adapter.target_modules: nonexistent_proj not in the model",
    ),
    # data files
    "invalid-json": (lambda c: ["finetune", c.data(b'{"messages": []}\n{"messages": [\n')], "bad.jsonl:1"),
    "invalid-json-line-3": (
        lambda c: [
            "finetune",
            c.data(
                b"".join(
                    [
                        b'{"messages": [{"role": "user", "content": "a"}, '
                        b'{"role": "assistant", "content": "b"}]}\n'
                    ]
                    * 2
                )
                + b"{not json}\n"
            ),
        ],
        "bad.jsonl:3: invalid JSON",
    ),
    "wrong-role": (
        lambda c: ["finetune", c.data([*GOOD, _turns(("user", "hi"), ("robot", "beep"))])],
        "bad.jsonl:5",
    ),
    "no-assistant-turn": (lambda c: ["finetune", c.data([_turns(("user", "hi"))])], "bad.jsonl:1"),
    "content-not-string": (
        lambda c: ["finetune", c.data([_turns(("user", 42), ("assistant", "x"))])],
        "bad.jsonl:1",
    ),
    "unknown-record-format": (
        lambda c: ["finetune", c.data([{"question": "q", "reply": "a"}])],
        "bad.jsonl:1",
    ),
    "empty-data-file": (lambda c: ["finetune", c.data(b"")], "no usable records"),
    "binary-garbage": (lambda c: ["finetune", c.data(bytes(range(256)) * 64)], "bad.jsonl"),
    "huge-garbage-line": (
        lambda c: ["finetune", c.data(b"x" * 5_000_000 + b"\n")],
        "bad.jsonl:1: invalid JSON",
    ),
    "missing-data-file": (
        lambda c: ["finetune", c.recipe(data={"train": str(c.tmp / "absent.jsonl")})],
        "absent.jsonl",
    ),
    "glob-matches-nothing": (
        lambda c: ["finetune", c.recipe(data={"train": str(c.tmp / "none-*.jsonl")})],
        "none-*.jsonl",
    ),
    "eval-split-takes-all": (
        lambda c: ["finetune", c.recipe(data={"train": c.data_path(GOOD), "eval": [], "eval_size": 100})],
        "data.train",
    ),
    # CLI arguments and environment
    "resume-not-a-run": (
        lambda c: ["finetune", c.recipe(), "--resume", str(c.folder("not-a-run"))],
        "not a run folder",
    ),
    "resume-without-runs": (lambda c: ["finetune", c.recipe(), "--resume"], "no earlier run of 'tiny'"),
    "manifest-missing": (
        lambda c: ["finetune", "--from-manifest", str(c.tmp / "manifest.json")],
        "no such manifest",
    ),
    "manifest-garbage": (
        lambda c: ["finetune", "--from-manifest", c.manifest("{oops")],
        "not a readable manifest",
    ),
    "manifest-and-recipe": (
        lambda c: ["finetune", c.recipe(), "--from-manifest", c.manifest("{}")],
        "drop the recipe argument",
    ),
    "manifest-name-escapes": (
        lambda c: ["finetune", "--from-manifest", _escaping_manifest(c)],
        "recipe_name '../../escaped' would write outside",
    ),
    "output-dir-is-a-file": (
        lambda c: ["finetune", c.recipe(train={"output_dir": str(_file(c))})],
        "a-file' is a file",
    ),
    "offline-hub-model": (
        lambda c: ["finetune", c.recipe(model={"name": "some-org/not-cached-model"})],
        "HF_HUB_OFFLINE=1",
    ),
    "warmup-steps-and-ratio": (
        lambda c: ["validate", c.recipe(train={"warmup_steps": 5, "warmup_ratio": 0.1})],
        "warmup_steps (5) and warmup_ratio (0.1) are both set",
    ),
    "resume-not-a-checkpoint": (
        lambda c: ["finetune", "--resume", str(c.folder("checkpoint-7"))],
        "nor a checkpoint folder (no trainer_state.json)",
    ),
    "resume-incomplete-checkpoint": (
        lambda c: ["finetune", c.recipe(), "--resume", str(_half_checkpoint(c))],
        "cannot resume from this checkpoint: no weights",
    ),
    "resume-foreign-checkpoint-without-recipe": (
        lambda c: ["finetune", "--resume", str(_half_checkpoint(c))],
        "name the recipe that continues it",
    ),
}
# id -> (argv, word the usage error must name)
USAGE_ERRORS: dict[str, tuple[list[str], str]] = {
    "unknown-option": (["finetune", "--frobnicate"], "--frobnicate"),
    "unknown-command": (["finetun", "lora-small"], "finetun"),
    "missing-argument": (["validate"], "Missing argument"),
    "option-missing-value": (["finetune", "--from-manifest"], "--from-manifest"),
}


def _half_checkpoint(c: Ctx) -> Path:
    folder = c.folder("checkpoint-3")  # trainer_state.json written, weights and optimizer state missing
    (folder / "trainer_state.json").write_text('{"global_step": 3}', encoding="utf-8")
    return folder


def _config_only(c: Ctx) -> Path:
    folder = c.folder("config-only")
    (folder / "config.json").write_text((c.model_dir / "config.json").read_text())
    return folder


def _file(c: Ctx) -> Path:
    path = c.tmp / "a-file"
    path.write_text("not a folder")
    return path


def _escaping_manifest(c: Ctx) -> str:
    import json

    recipe = yaml.safe_load(Path(c.recipe()).read_text())
    return c.manifest(json.dumps({"format": 1, "recipe_name": "../../escaped", "recipe": recipe}))


def _data_path(self: Ctx, records: list[Any]) -> str:
    return str(write_jsonl(self.tmp / "data" / "all.jsonl", records))


Ctx.data_path = _data_path  # type: ignore[attr-defined]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture
def ctx(
    tmp_path: Path,
    make_recipe: Callable[..., Path],
    tiny_model_dir: Path,
    chat_files: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Ctx:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return Ctx(tmp_path, make_recipe, tiny_model_dir)


def test_there_are_at_least_30_bad_inputs() -> None:
    assert len(CASES) + len(USAGE_ERRORS) >= 30


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_clean_line(
    case: str, ctx: Ctx, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build, fragment = CASES[case]
    argv = build(ctx)
    capsys.readouterr()
    before = _snapshot(ctx.tmp)
    code, err = run_cli(argv, monkeypatch, capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code not in (0, None), f"{case}: exit code {code}; stderr: {err[-2000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert len(errors) == 1, f"{case}: expected one error line, got: {err[-2000:]}"
    assert fragment in errors[0], f"{case}: {errors[0]!r} does not contain {fragment!r}"
    assert len(errors[0]) < 800, f"{case}: the message is {len(errors[0])} characters long"
    assert _snapshot(ctx.tmp) == before, f"{case}: files were written or changed"
    assert not (ctx.tmp / "runs").exists()


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_bad_cli_usage_exits_2_without_traceback(
    case: str, ctx: Ctx, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # click reports usage errors as a short usage block plus a boxed message (several lines by design);
    # what matters is exit code 2, no traceback, the offending word named, and nothing written.
    argv, word = USAGE_ERRORS[case]
    before = _snapshot(ctx.tmp)
    code, err = run_cli(argv, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    assert "Error" in err and word in err
    assert _snapshot(ctx.tmp) == before


def test_hub_token_in_environment_is_not_needed_for_errors(
    ctx: Ctx, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "hf_FAKEtokenFORtests0123456789abcdef"
    monkeypatch.setenv("HF_TOKEN", token)
    code, err = run_cli(["finetune", ctx.recipe(train={"max_steps": 0})], monkeypatch, capsys)
    assert code == 2 and token not in err
    assert os.environ["HF_TOKEN"] == token
