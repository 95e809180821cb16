"""The model card (README.md) written into every run folder and pushed with the adapter."""

from __future__ import annotations

from typing import Any

from pipeline.recipe import Recipe


def build_model_card(recipe: Recipe, metrics: dict[str, Any]) -> str:
    """Markdown model card with Hub metadata for a finished run."""
    base, adapted = metrics.get("base", {}), metrics.get("adapted", {})
    method = "full fine-tuning" if recipe.adapter.method == "full" else (
        "QLoRA" if recipe.model.quantization == "4bit" else "DoRA" if recipe.adapter.use_dora else "LoRA")
    sources = ", ".join(s.path for s in recipe.data.train)
    return f"""---
base_model: {recipe.model.name}
library_name: peft
pipeline_tag: text-generation
tags:
- {method.lower().replace(" ", "-")}
- sft
- trl
---

# {recipe.name} adapter for {recipe.model.name}

Fine-tuned with {method} (r={recipe.adapter.r}, alpha={recipe.adapter.alpha}, targets={recipe.adapter.target_modules})
on {sources} by this project's `pipeline finetune {recipe.name}`.

## Evaluation (held-out split)

| metric | base | adapted |
|---|---|---|
| perplexity (trained tokens) | {base.get("perplexity")} | {adapted.get("perplexity")} |
| answer similarity (mean cosine) | {base.get("similarity", {}).get("mean")} | {adapted.get("similarity", {}).get("mean")} |

## How to load

```python
from peft import AutoPeftModelForCausalLM
model = AutoPeftModelForCausalLM.from_pretrained("path/to/adapter")
```
"""
