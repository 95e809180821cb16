"""Every data format trains through the same recipe path: one recipe mixing messages (JSONL), ShareGPT
(JSON), Alpaca (CSV), prompt/completion (Parquet) and plain text (TXT), with a template file from
recipes/templates/ and pad == EOS, through SFTTrainer; then the adapter carries the template."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import torch
from conftest import write_jsonl

from pipeline.config.loader import load_recipe
from pipeline.data.splits import load_splits
from pipeline.data.tokenize import tokenize_records
from pipeline.models.loading import load_base_model, load_tokenizer
from pipeline.models.saving import save_adapter
from pipeline.train.stages.build import build_trainer

TEMPLATE = Path(__file__).resolve().parents[3] / "recipes" / "templates" / "chatml.jinja"
ANSWER = "It joins path segments."


def _write_sources(folder: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(
        folder / "messages.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "Explain os.path.join."},
                    {"role": "assistant", "content": ANSWER},
                ]
            }
        ]
        * 4,
    )
    (folder / "sharegpt.json").write_text(
        json.dumps(
            [
                {
                    "conversations": [
                        {"from": "human", "value": "Explain os.path.join."},
                        {"from": "gpt", "value": ANSWER},
                    ]
                }
            ]
            * 4
        )
    )
    with (folder / "alpaca.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["instruction", "input", "output"])
        writer.writerows([["Explain os.path.join.", "", ANSWER]] * 4)
    pq.write_table(
        pa.Table.from_pylist([{"prompt": "Explain os.path.join.", "completion": ANSWER}] * 4),
        folder / "pc.parquet",
    )
    (folder / "corpus.txt").write_text(
        "The quick brown fox jumps over the lazy dog.\n\n" * 4, encoding="utf-8"
    )
    names = ["messages.jsonl", "sharegpt.json", "alpaca.csv", "pc.parquet", "corpus.txt"]
    return [{"path": str(folder / name)} for name in names]


def test_every_format_trains_through_one_recipe(make_recipe: Any, tmp_path: Path) -> None:
    sources = _write_sources(tmp_path / "mixed")
    recipe = load_recipe(
        str(
            make_recipe(
                model={"chat_template": str(TEMPLATE)},
                data={"train": sources, "eval": [], "eval_size": 0},
                train={"max_steps": 2, "batch_size": 4, "group_by_length": False},
            )
        )
    )
    splits = load_splits(recipe.data)
    assert len(splits.train) == 20
    tokenizer = load_tokenizer(recipe.model)
    tokenizer.pad_token = tokenizer.eos_token  # the SmolLM2 situation: padding must not mask EOS
    dataset = tokenize_records(splits.train, tokenizer, recipe.train)

    by_file: dict[str, set[str]] = {}
    for row in dataset:
        trained = tokenizer.decode(
            [t for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True) if m]
        )
        by_file.setdefault(Path(row["location"].split(":")[0].split("[")[0]).name, set()).add(trained)
    chat = {f"{ANSWER}<|im_end|>\n"}
    assert by_file == {
        "messages.jsonl": chat,
        "sharegpt.json": chat,
        "alpaca.csv": chat,
        "pc.parquet": chat,
        "corpus.txt": {"The quick brown fox jumps over the lazy dog.<|im_end|>"},
    }

    model = load_base_model(recipe.model)
    trainer = build_trainer(recipe, tmp_path / "run", model, tokenizer, dataset, None)
    rows = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(rows)  # padding-free (the default): the rows back to back, in one row
    expected: list[int] = []
    for row in rows:  # labels: ids where the mask is 1 (never decided by the pad id), else -100
        source = next(r for r in dataset if r["input_ids"] == row["input_ids"])
        labels = [
            t if m else -100 for t, m in zip(source["input_ids"], source["assistant_masks"], strict=True)
        ]
        assert labels.count(tokenizer.eos_token_id) == 1  # the assistant turn's (or text's) EOS is trained
        assert labels[0] == -100  # no example is trained to follow the previous one in the row
        expected += labels
    assert batch["labels"].tolist() == [expected]
    assert batch["position_ids"][0].tolist() == [i for row in rows for i in range(len(row["input_ids"]))]

    output = trainer.train()
    assert math.isfinite(output.training_loss) and output.global_step == 2
    lora_b = [v for k, v in trainer.model.state_dict().items() if "lora_B" in k]
    assert lora_b and any(torch.count_nonzero(v) for v in lora_b)

    adapter = save_adapter(trainer.model, tokenizer, tmp_path / "run" / "adapter", save=trainer.save_model)
    assert (adapter / "chat_template.jinja").read_text(encoding="utf-8") == TEMPLATE.read_text(
        encoding="utf-8"
    )
