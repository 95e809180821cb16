"""Every speed lever is scoped: inside its block the library is patched, after it the library is as it was,
and a lever left applied is caught by the suite's autouse check (tests/patch_state.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import torch
from patch_state import leaked_patches


def _levers(tiny_model: Any) -> dict[str, Callable[[], contextlib.AbstractContextManager[Any]]]:
    from peft import LoraConfig, get_peft_model

    from pipeline.train.allocator import keeping_freed_memory
    from pipeline.train.attention import short_example_kernel
    from pipeline.train.patches.peft_lora import lora_updates_in_one_multiply
    from pipeline.train.patches.trl_lm_head import trained_positions_only

    adapted = get_peft_model(tiny_model, LoraConfig(r=2, target_modules=["q_proj"]))
    return {
        "trl.trainer.utils._use_triton": lambda: trained_positions_only(True),
        "short-example kernel": lambda: short_example_kernel(False),
        "glibc malloc": lambda: keeping_freed_memory(True),
        # peft_lora patches each layer instance, never the class: nothing global to leave behind
        "instance forward": lambda: lora_updates_in_one_multiply(adapted, active=True),
    }


@pytest.mark.parametrize(
    "name", ["trl.trainer.utils._use_triton", "short-example kernel", "glibc malloc", "instance forward"]
)
def test_a_lever_left_applied_is_named_and_its_block_restores_it(name: str, tiny_model: Any) -> None:
    lever = _levers(tiny_model)[name]()
    lever.__enter__()
    try:
        found = leaked_patches()
        if name == "instance forward":  # patched on the layer instances, while the class stays peft's
            from peft.tuners.lora.layer import Linear

            patched = [m for m in tiny_model.modules() if type(m) is Linear and "forward" in vars(m)]
            assert patched and found == []
        else:
            assert found and name.split(".")[-1] in found[0], found
    finally:
        lever.__exit__(None, None, None)
    assert leaked_patches() == []


def test_a_trainer_restores_every_library_it_patched(tiny_trainer: Any) -> None:
    """Inside train() the levers are on (recorded as such); after it nothing of them remains."""
    import trl.trainer.utils as trl_utils
    from peft.tuners.lora.layer import Linear
    from transformers import TrainerCallback

    from pipeline.train.allocator import keeps_freed_memory
    from pipeline.train.patches.registry import active_patches

    seen: dict[str, Any] = {}

    class Probe(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            layers = [m for m in model.modules() if type(m) is Linear]
            seen.update(
                compact=trl_utils._use_triton(torch.device("cpu")),
                kept=keeps_freed_memory(),
                attention=model.config._attn_implementation,
                instance_forward=all("forward" in vars(layer) for layer in layers),
            )

    trainer = tiny_trainer(max_steps=1)
    trainer.add_callback(Probe())
    trainer.train()
    assert seen == {"compact": True, "kept": True, "attention": "packed_sdpa", "instance_forward": True}
    assert active_patches()["packed_sdpa"] == "on"
    assert leaked_patches() == []
    assert trainer.model.config._attn_implementation == "sdpa"
    assert not any("forward" in vars(m) for m in trainer.model.modules() if type(m) is Linear)
