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

    def launch(self, text: str) -> str:
        path = self.tmp / "accelerate.yaml"
        path.write_text(text, encoding="utf-8")
        return str(path)

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
    # strict recipes: duplicate keys, non-finite or absurd numbers, YAML booleans where numbers belong
    "duplicate-yaml-key": (
        lambda c: ["validate", c.yaml_text("data:\n  train: a.jsonl\ntrain:\n  epochs: 1\n  epochs: 2\n")],
        "bad.yaml:5: key 'epochs' appears twice (first on line 4)",
    ),
    "duplicate-section": (
        lambda c: ["validate", c.yaml_text("train: {}\ndata: {train: a.jsonl}\ntrain: {epochs: 2}\n")],
        "bad.yaml:3: key 'train' appears twice (first on line 1)",
    ),
    "infinite-learning-rate": (
        lambda c: ["validate", c.recipe(train={"learning_rate": float("inf")})],
        "train.learning_rate: Input should be a finite number",
    ),
    "nan-weight-decay": (
        lambda c: ["validate", c.recipe(train={"weight_decay": float("nan")})],
        "train.weight_decay: Input should be a finite number",
    ),
    "exponent-max-length": (
        lambda c: ["validate", c.recipe(), "train.max_length=1e20"],
        "train.max_length: Input should be a valid integer (got 1e+20)",
    ),
    "absurd-epochs": (
        lambda c: ["validate", c.recipe(), "train.epochs=1e30"],
        "train.epochs: Input should be less than or equal to 1000",
    ),
    "huge-rank": (lambda c: ["validate", c.recipe(adapter={"r": 100000})], "adapter.r: Input should be less"),
    "yes-as-rank": (
        lambda c: ["validate", c.recipe(), "adapter.r=yes"],
        "adapter.r: Input should be a valid integer (got True: YAML reads yes/no/on/off",
    ),
    "quoted-number": (
        lambda c: ["validate", c.recipe(train={"batch_size": "8"})],
        "train.batch_size: Input should be a valid integer (got '8')",
    ),
    "number-as-bool": (
        lambda c: ["validate", c.recipe(data={"dedup": 1})],
        "data.dedup: Input should be a valid boolean (got 1)",
    ),
    "eval-size-fraction-above-1": (
        lambda c: ["validate", c.recipe(data={"eval_size": 2.5})],
        "data.eval_size: must be a fraction below 1",
    ),
    "negative-seed": (lambda c: ["validate", c.recipe(train={"seed": -1})], "train.seed:"),
    "unknown-tracker": (
        lambda c: ["validate", c.recipe(train={"report_to": ["comet"]})],
        "train.report_to.0: Input should be 'tensorboard', 'trackio', 'wandb', 'mlflow' or 'none'",
    ),
    "eval-steps-without-held-out-data": (
        lambda c: ["validate", c.recipe(data={"eval": [], "eval_size": 0}, train={"eval_steps": 5})],
        "train.eval_steps is 5 but there is no held-out data",
    ),
    "gate-without-held-out-data": (
        lambda c: ["validate", c.recipe(data={"eval": [], "eval_size": 0}, eval={"fail_if_worse": True})],
        "eval.fail_if_worse needs held-out data",
    ),
    "early-stopping-without-eval-steps": (
        lambda c: ["validate", c.recipe(train={"early_stopping_patience": 2})],
        "early_stopping_patience needs the held-out loss during training",
    ),
    "early-stopping-save-steps": (
        lambda c: [
            "validate",
            c.recipe(train={"early_stopping_patience": 2, "eval_steps": 3, "save_steps": 4}),
        ],
        "train.save_steps (4) must be a multiple of train.eval_steps (3)",
    ),
    # validate finds what finetune would find, before any weight loads
    "validate-missing-data-file": (
        lambda c: ["validate", c.recipe(data={"train": str(c.tmp / "absent.jsonl")})],
        "absent.jsonl",
    ),
    "validate-bad-record": (
        lambda c: ["validate", c.data([*GOOD, _turns(("user", "hi"), ("robot", "beep"))])],
        "bad.jsonl:5: messages[1].role must be one of",
    ),
    "validate-missing-chat-template": (
        lambda c: ["validate", c.recipe(model={"chat_template": str(c.tmp / "none.jinja")})],
        "none.jinja",
    ),
    "validate-output-dir-is-a-file": (
        lambda c: ["validate", c.recipe(train={"output_dir": str(_file(c))})],
        "a-file' is a file",
    ),
    "validate-output-dir-below-a-file": (
        lambda c: ["validate", c.recipe(train={"output_dir": str(_file(c) / "runs")})],
        "train.output_dir",
    ),
    "validate-missing-model": (
        lambda c: ["validate", c.recipe(model={"name": str(c.tmp / "no-model")})],
        "no-model: no such model folder",
    ),
    "launch-config-missing": (
        lambda c: ["validate", c.recipe(), "--launch", str(c.tmp / "accelerate.yaml")],
        "accelerate.yaml: accelerate config not found",
    ),
    "launch-config-no-processes": (
        lambda c: ["validate", c.recipe(), "--launch", c.launch("distributed_type: NO\nnum_processes: 0\n")],
        "num_processes must be a whole number >= 1 (got 0)",
    ),
    "launch-config-unknown-type": (
        lambda c: ["validate", c.recipe(), "--launch", c.launch("distributed_type: MULTI_TPU\n")],
        "distributed_type 'MULTI_TPU' is not one of",
    ),
    "launch-config-precision-conflict": (
        lambda c: [
            "validate",
            c.recipe(train={"precision": "fp32"}),
            "--launch",
            c.launch("distributed_type: MULTI_GPU\nuse_cpu: true\nnum_processes: 2\nmixed_precision: fp16\n"),
        ],
        "mixed_precision 'fp16' contradicts the recipe's train.precision",
    ),
    # absolute paths that do not exist, in every command that takes a recipe
    **{
        f"absolute-recipe-path-{'-'.join(command)}": (
            lambda c, command=command: [*command, "/nonexistent/my-recipe"],
            "/nonexistent/my-recipe: recipe file not found",
        )
        for command in (("validate",), ("plan",), ("tokens",), ("data", "hygiene"), ("data", "audit"))
    },
    "tokens-missing-data-file": (
        lambda c: ["tokens", str(c.tmp / "nope.jsonl")],
        "nope.jsonl: data file not found",
    ),
    # commands that take a trained model
    "eval-missing-target": (lambda c: ["eval", str(c.tmp / "gone")], "gone: no such model folder"),
    "eval-empty-folder": (lambda c: ["eval", str(c.folder("empty"))], "neither a run folder, an adapter"),
    "merge-missing-run": (lambda c: ["merge", str(c.tmp / "gone")], "gone: no such model folder"),
    "chat-missing-target": (lambda c: ["chat", str(c.tmp / "gone")], "gone: no such model folder"),
    "generate-missing-target": (
        lambda c: ["generate", str(c.tmp / "gone"), "hello"],
        "gone: no such model folder",
    ),
    "serve-empty-folder": (lambda c: ["serve", str(c.folder("empty"))], "neither a run folder, an adapter"),
    "push-bad-repo-id": (
        lambda c: ["push", str(c.folder("run")), "--repo-id", "not a repo"],
        "repo id 'not a repo' must be ORG/NAME",
    ),
    "plan-bad-memory": (
        lambda c: ["plan", c.recipe(), "--gpu-memory", "lots"],
        "--gpu-memory 'lots': not a size",
    ),
    "plan-bad-strategy": (
        lambda c: ["plan", c.recipe(), "--strategy", "zero9"],
        "--strategy 'zero9': use one of ddp, fsdp, zero2, zero3",
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
    "eval-base-off-with-gate": (
        lambda c: ["validate", c.recipe(eval={"base": False, "fail_if_worse": True})],
        "eval: fail_if_worse compares with the base model's metrics but base is false",
    ),
    # chat templates by name, and tool calling
    "unknown-chat-template-name": (
        lambda c: ["validate", c.recipe(model={"chat_template": "chatlm"})],
        "model.chat_template: unknown chat template 'chatlm'; set model.chat_template to one of chatml,",
    ),
    "system-prompt-template-refuses": (
        lambda c: [
            "finetune",
            c.recipe(model={"chat_template": "mistral"}, data={"system_prompt": "Be brief."}),
        ],
        "data.system_prompt: the chat template of 'mistral' does not accept a system turn",
    ),
    "tool-call-arguments-not-json": (
        lambda c: ["finetune", c.data([_tool_record('{"a": 1,')])],
        "bad.jsonl:1: messages[1].tool_calls[0].function.arguments is not valid JSON",
    ),
    "tool-output-without-call": (
        lambda c: ["finetune", c.data([_turns(("user", "hi"), ("tool", "42"), ("assistant", "ok"))])],
        "bad.jsonl:1: messages[1] is a tool output with no assistant tool call before it",
    ),
    "tool-call-unknown-tool": (
        lambda c: ["finetune", c.data([_tool_record("{}", name="subtract")])],
        "bad.jsonl:1: messages[1].tool_calls[0].function.name 'subtract' is not among the record's tools",
    ),
    "template-without-tool-support": (
        lambda c: ["finetune", c.data([_tool_record('{"a": 6, "b": 7}')])],
        "model.chat_template: the chat template of",
    ),
    # pipeline export: every refusal comes before a weight loads or a file is written
    "export-missing-run": (lambda c: ["export", str(c.tmp / "gone")], "gone: no such model folder"),
    "export-unknown-format": (
        lambda c: ["export", str(c.model_dir), "--format", "onnx"],
        "--format onnx: not one of gguf, ollama",
    ),
    "export-bad-dtype": (
        lambda c: ["export", str(c.model_dir), "--dtype", "q4_k"],
        "--dtype q4_k: not one of f16, bf16, q8_0, f32",
    ),
    "export-unsupported-architecture": (
        lambda c: ["export", str(_gpt2_config(c))],
        "architecture 'gpt2' cannot be exported to GGUF yet; supported: llama, qwen2",
    ),
    "export-ollama-unknown-template": (
        lambda c: ["export", str(_mistral_chat_model(c)), "--format", "ollama"],
        "the chat template is none Ollama export knows; supported: chatml, llama3, gemma",
    ),
}
# id -> (argv, word the usage error must name)
USAGE_ERRORS: dict[str, tuple[list[str], str]] = {
    "unknown-option": (["finetune", "--frobnicate"], "--frobnicate"),
    "unknown-command": (["finetun", "lora-small"], "finetun"),
    "missing-argument": (["validate"], "Missing argument"),
    "option-missing-value": (["finetune", "--from-manifest"], "--from-manifest"),
    "audit-unknown-split": (["data", "audit", "lora-small", "--split", "test"], "--split"),
    "audit-negative-examples": (["data", "audit", "lora-small", "-n", "-2"], "--examples"),
}


def _pairs(c: Ctx, records: list[Any], **train: Any) -> str:
    """A DPO recipe training (and evaluating) on these preference records."""
    path = write_jsonl(c.tmp / "data" / "bad.jsonl", records)
    return c.recipe(data={"train": str(path), "eval": str(path)}, train={"stage": "dpo", **train})


PAIR = {"prompt": "What does len do?", "chosen": "It counts items.", "rejected": "It sorts items."}
# Preference stages (train.stage: dpo): records, stage sections, the parent adapter.
CASES.update(
    {
        "dpo-identical-answers": (
            lambda c: ["validate", _pairs(c, [PAIR, {**PAIR, "rejected": " It counts items. "}])],
            "bad.jsonl:2: chosen and rejected are identical",
        ),
        "dpo-empty-rejected": (
            lambda c: ["validate", _pairs(c, [{**PAIR, "rejected": "  "}])],
            "bad.jsonl:1: rejected is empty",
        ),
        "dpo-no-shared-prompt": (
            lambda c: [
                "validate",
                _pairs(
                    c,
                    [
                        {
                            "chosen": _turns(("user", "a?"), ("assistant", "b"))["messages"],
                            "rejected": _turns(("user", "c?"), ("assistant", "d"))["messages"],
                        }
                    ],
                ),
            ],
            "bad.jsonl:1: chosen and rejected share no leading prompt turns",
        ),
        "dpo-rejected-user-turn": (
            lambda c: ["validate", _pairs(c, [{**PAIR, "rejected": [{"role": "user", "content": "x"}]}])],
            "bad.jsonl:1: rejected: the answer may hold assistant turns only",
        ),
        "dpo-conversations-as-pairs": (
            lambda c: ["validate", c.recipe(train={"stage": "dpo"})],
            "train.stage is dpo, which trains on preference pairs (prompt, chosen, rejected), but this record",
        ),
        "sft-stage-given-pairs": (
            lambda c: ["validate", c.data([PAIR])],
            "bad.jsonl:1: train.stage is sft, which trains on conversations, prompt/completion or text, but this "
            "record holds preference pairs (prompt, chosen, rejected); set train.stage: dpo",
        ),
        "dpo-section-in-sft-recipe": (
            lambda c: ["validate", c.recipe(dpo={"beta": 0.2})],
            "the dpo section applies to train.stage: dpo, but train.stage is sft",
        ),
        "dpo-unknown-loss-type": (
            lambda c: ["validate", c.recipe(train={"stage": "dpo"}, dpo={"loss_type": "sigmod"})],
            "dpo.loss_type",
        ),
        "dpo-unknown-key": (
            lambda c: ["validate", c.recipe(train={"stage": "dpo"}, dpo={"betta": 0.2})],
            "beta",
        ),
        "dpo-with-sft-only-key": (
            lambda c: ["validate", _pairs(c, [PAIR], packing=True)],
            "train.packing applies to train.stage: sft only",
        ),
        "dpo-loss-weights-mismatch": (
            lambda c: ["validate", c.recipe(train={"stage": "dpo"}, dpo={"loss_weights": [0.5, 0.5]})],
            "loss_weights has 2 value(s) for 1 loss_type(s)",
        ),
        "kto-label-not-boolean": (
            lambda c: [
                "validate",
                _pairs(c, [{"prompt": "q?", "completion": "a", "label": "maybe"}], stage="kto", batch_size=2),
            ],
            "bad.jsonl:1: label must be true (a desirable completion) or false (got 'maybe')",
        ),
        "kto-batch-of-one": (
            lambda c: ["validate", c.recipe(train={"stage": "kto", "batch_size": 1})],
            "train.batch_size must be at least 2 (got 1)",
        ),
        "kto-given-pairs": (
            lambda c: ["validate", _pairs(c, [PAIR], stage="kto", batch_size=2)],
            "bad.jsonl:1: train.stage is kto, which trains on labelled completions",
        ),
        "grpo-unknown-reward": (
            lambda c: [
                "validate",
                c.recipe(train={"stage": "grpo"}, grpo={"rewards": [{"function": "exact"}]}),
            ],
            "function 'exact' is neither a built-in (exact_match, regex, length, similarity) nor FILE.py:NAME",
        ),
        "grpo-regex-without-pattern": (
            lambda c: [
                "validate",
                c.recipe(train={"stage": "grpo"}, grpo={"rewards": [{"function": "regex"}]}),
            ],
            "regex needs a pattern",
        ),
        "grpo-batch-not-multiple-of-group": (
            lambda c: [
                "validate",
                c.recipe(train={"stage": "grpo", "batch_size": 6}, grpo={"num_generations": 4}),
            ],
            "must be a multiple of grpo.num_generations (4)",
        ),
        "grpo-given-pairs": (
            lambda c: ["validate", _pairs(c, [PAIR], stage="grpo", batch_size=4)],
            "bad.jsonl:1: train.stage is grpo, which trains on prompts",
        ),
        "model-adapter-missing": (
            lambda c: ["validate", c.recipe(model={"adapter": "runs/no-such-run"})],
            "model.adapter 'runs/no-such-run'",
        ),
    }
)


def _streamed(c: Ctx, data: dict[str, Any] | None = None, **train: Any) -> str:
    """A data.streaming recipe (train.max_steps set unless overridden) with these data settings."""
    return c.recipe(data={"streaming": True, **(data or {})}, train={"max_steps": 2, **train})


# data.streaming: the recipe cross-checks, and what a stream cannot read
CASES.update(
    {
        "streaming-without-max-steps": (
            lambda c: ["validate", _streamed(c, max_steps=-1)],
            "data.streaming: train.max_steps: a stream has no length; set train.max_steps",
        ),
        "streaming-with-dedup": (
            lambda c: ["validate", _streamed(c, {"dedup": True})],
            "data.streaming: data.dedup is not applied to a stream; run `pipeline data hygiene`",
        ),
        "streaming-eval-split": (
            lambda c: ["validate", _streamed(c, {"eval": [], "eval_size": 0.2})],
            "data.streaming: data.eval_size: an eval split cannot be cut from a stream",
        ),
        "streaming-json-file": (
            lambda c: ["validate", _streamed(c, {"train": _json_file(c)})],
            "data.streaming reads .jsonl and .parquet files",
        ),
        "streaming-bad-record": (
            lambda c: [
                "validate",
                _streamed(c, {"train": c.data_path([*GOOD, _turns(("user", "hi"), ("robot", "beep"))])}),
            ],
            "all.jsonl:5: messages[1].role must be one of",
        ),
    }
)


def _json_file(c: Ctx) -> str:
    path = c.tmp / "data" / "records.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[{"text": "a"}]', encoding="utf-8")
    return str(path)


def _half_checkpoint(c: Ctx) -> Path:
    folder = c.folder("checkpoint-3")  # trainer_state.json written, weights and optimizer state missing
    (folder / "trainer_state.json").write_text('{"global_step": 3}', encoding="utf-8")
    return folder


def _config_only(c: Ctx) -> Path:
    folder = c.folder("config-only")
    (folder / "config.json").write_text((c.model_dir / "config.json").read_text())
    return folder


def _gpt2_config(c: Ctx) -> Path:
    from transformers import GPT2Config

    folder = c.folder("gpt2")
    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(folder)
    return folder


def _mistral_chat_model(c: Ctx) -> Path:
    import shutil

    from pipeline.config.templates import template_path

    folder = c.tmp / "mistral-chat"
    shutil.copytree(c.model_dir, folder)
    shutil.copy(template_path("mistral"), folder / "chat_template.jinja")
    return folder


def _file(c: Ctx) -> Path:
    path = c.tmp / "a-file"
    path.write_text("not a folder")
    return path


def _escaping_manifest(c: Ctx) -> str:
    import json

    recipe = yaml.safe_load(Path(c.recipe()).read_text())
    manifest = {
        "format": 1,
        "recipe_name": "../../escaped",
        "recipe": recipe,
        "model": {"name": recipe["model"]["name"]},
        "times": {"started": "2026-12-07T00:00:00+00:00"},
    }
    return c.manifest(json.dumps(manifest))


def _data_path(self: Ctx, records: list[Any]) -> str:
    return str(write_jsonl(self.tmp / "data" / "all.jsonl", records))


Ctx.data_path = _data_path  # type: ignore[attr-defined]


def _tool_record(arguments: str, name: str = "multiply") -> dict[str, Any]:
    """A tool-calling record (the tiny model's ChatML template has no tool support)."""
    call = {"type": "function", "function": {"name": name, "arguments": arguments}}
    tool = {"type": "function", "function": {"name": "multiply", "parameters": {"type": "object"}}}
    messages = [
        {"role": "user", "content": "6 times 7?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": "42."},
    ]
    return {"messages": messages, "tools": [tool]}


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


def test_there_are_at_least_60_bad_inputs() -> None:
    assert len(CASES) + len(USAGE_ERRORS) >= 60


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
