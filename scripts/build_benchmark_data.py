"""Build the offline benchmark tasks and the general-text perplexity set from text lm-eval itself ships.

lm-eval (MIT; a dependency of this project) ships the worked few-shot examples of two benchmarks inside its
wheel: 57 MMLU subjects x ~5 questions with a chain-of-thought answer (`tasks/mmlu/flan_cot_fewshot/
_cot_prompts.json`) and 27 BIG-Bench Hard tasks x 3 questions (`tasks/bbh/cot_fewshot/*.yaml`). This script
turns them into three lm-eval tasks over local JSONL files and one text set, none of them about Python:

- offline_mmlu: MMLU questions, multiple choice over the four option texts (acc, acc_norm)
- offline_bbh_mc: the BBH questions that list options, multiple choice over the option texts
- offline_bbh_gen: the BBH questions with a short free-form answer, greedy generation, exact match
- general_text.jsonl: the worked explanations of both, as plain English text for perplexity

Writes pipeline/evaluation/benchmark_tasks/ (data files, LICENSES.md; the task YAML files beside them are
written by hand). Deterministic: sorted walk, no randomness. Run from anywhere:
``python scripts/build_benchmark_data.py``
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import lm_eval
import yaml

LM_EVAL = Path(lm_eval.__file__).parent / "tasks"
OUT_DIR = Path(__file__).resolve().parent.parent / "pipeline" / "evaluation" / "benchmark_tasks"
MMLU_OPTION = re.compile(r"\(([A-D])\)\s*")
BBH_OPTION = re.compile(r"^\(([A-R])\)\s*(.+)$")
ANSWER = re.compile(r"answer is \(?([^().]+?)\)?\.?\s*$")


def _mmlu() -> tuple[list[dict], list[str]]:
    """(questions, explanations) from the MMLU chain-of-thought prompts; blocks that do not parse into a
    question, four options and one lettered answer are skipped."""
    prompts = json.loads((LM_EVAL / "mmlu/flan_cot_fewshot/_cot_prompts.json").read_text())
    questions, texts = [], []
    for subject in sorted(prompts):
        for block in prompts[subject].split("\n\nQ: ")[1:]:
            if "\nA: " not in block:
                continue
            body, answer = block.split("\nA: ", 1)
            lines = body.strip().split("\n")
            parts = MMLU_OPTION.split(lines[-1])
            letter = re.search(r"The answer is \(([A-D])\)", answer)
            if len(parts) != 9 or parts[0].strip() or letter is None:
                continue
            choices = [parts[i].strip() for i in range(2, 9, 2)]
            if [parts[i] for i in range(1, 9, 2)] != list("ABCD") or not all(choices):
                continue
            explanation = answer.removeprefix("Let's think step by step.").strip()
            questions.append(
                {
                    "subject": subject,
                    "question": "\n".join(lines[:-1]).strip(),
                    "choices": choices,
                    "answer": "ABCD".index(letter.group(1)),
                }
            )
            texts.append(explanation)
    return questions, texts


def _bbh() -> tuple[list[dict], list[dict], list[str]]:
    """(multiple-choice questions, free-form questions, explanations) from the BBH chain-of-thought shots."""
    multiple, free, texts = [], [], []
    for path in sorted((LM_EVAL / "bbh/cot_fewshot").glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        for shot in config.get("fewshot_config", {}).get("samples", []):
            found = ANSWER.search(shot["target"].strip())
            if found is None:
                continue
            texts.append(shot["target"].strip())
            question, _, options = shot["input"].partition("\nOptions:\n")
            picked = (
                [BBH_OPTION.match(line.strip()) for line in options.strip().split("\n")] if options else []
            )
            if picked and all(picked):
                letters = [m.group(1) for m in picked]  # type: ignore[union-attr]
                if found.group(1) in letters:
                    multiple.append(
                        {
                            "task": path.stem,
                            "question": question.strip(),
                            "choices": [m.group(2).strip() for m in picked],  # type: ignore[union-attr]
                            "answer": letters.index(found.group(1)),
                        }
                    )
                continue
            if not options and len(found.group(1).split()) <= 4:
                free.append({"task": path.stem, "question": shot["input"].strip(), "answer": found.group(1)})
    return multiple, free, texts


def _write(name: str, rows: list[dict]) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    (OUT_DIR / name).write_text(text, encoding="utf-8")
    print(f"{OUT_DIR / name}: {len(rows)} rows, {len(text.encode()) / 1024:.0f} KiB")


def main() -> None:
    """Write the data files of the shipped tasks and the general-text set."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    mmlu, mmlu_texts = _mmlu()
    bbh_mc, bbh_gen, bbh_texts = _bbh()
    _write("offline_mmlu.jsonl", mmlu)
    _write("offline_bbh_mc.jsonl", bbh_mc)
    _write("offline_bbh_gen.jsonl", bbh_gen)
    _write("general_text.jsonl", [{"text": t} for t in mmlu_texts + bbh_texts if len(t.split()) >= 12])


if __name__ == "__main__":
    main()
