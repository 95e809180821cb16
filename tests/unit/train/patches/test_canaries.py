"""Canaries: each patch of a library's private names still fits the installed release.

A failure names the library and its version, so an upgrade that moved a private name is seen here first (the
run itself would only lose that speed lever, with a WARNING line). Every module in pipeline/train/patches/
that reaches into a library declares LIBRARY and canary(); a new patch without them fails here too.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from typing import Any

import pytest
import torch

import pipeline.train.patches as patches
from pipeline.cli.app import DRIFT_MODULES
from pipeline.train.patches import registry

# A deprecation about our calls or inside the patched libraries fails a canary: what a library deprecates is
# what it drops next, private names first. The CLI shows the same warnings once (pipeline.cli.app.show_drift).
DRIFT = rf"({'|'.join(DRIFT_MODULES)})(\.|$)"
pytestmark = [
    pytest.mark.filterwarnings(f"error::DeprecationWarning:{DRIFT}"),
    pytest.mark.filterwarnings(f"error::FutureWarning:{DRIFT}"),
]
PATCH_MODULES = sorted(name for _, name, _ in pkgutil.iter_modules(patches.__path__) if name != "registry")


def test_every_patch_module_is_covered() -> None:
    assert set(PATCH_MODULES) == {
        "accelerate_fsdp_cpu",
        "bnb_cpu",
        "peft_lora",
        "torch_cpu",
        "trainer_sampler",
        "transformers_attention",
        "trl_lm_head",
        "trl_rollouts",
    }


@pytest.mark.parametrize("name", PATCH_MODULES)
def test_patch_still_fits_the_installed_library(name: str) -> None:
    module = importlib.import_module(f"pipeline.train.patches.{name}")
    assert isinstance(module.LIBRARY, str) and callable(module.canary), (
        f"{name}: declare LIBRARY and canary()"
    )
    problem = module.canary()
    assert problem is None, f"{registry.library_version(module.LIBRARY)} broke patch '{name}': {problem}"


def test_a_lever_that_turns_itself_off_warns_and_is_recorded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """trl without the fused-head hook: the CPU keeps trl's own path, one WARNING names trl and its version."""
    import trl.trainer.utils as trl_utils

    from pipeline.train.patches.trl_lm_head import trained_positions_only

    monkeypatch.delattr(trl_utils, "_use_triton")
    with (
        caplog.at_level(logging.WARNING, logger="pipeline.train.patches.registry"),
        trained_positions_only(True) as active,
    ):
        assert active is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'compact_lm_head' is off" in warnings[0]
    assert registry.library_version("trl") in warnings[0] and "_use_triton is gone" in warnings[0]
    assert registry.active_patches()["compact_lm_head"].startswith("off: trl ")


def test_a_changed_trainer_signature_turns_the_sampler_patch_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import Trainer

    from pipeline.train.patches.trainer_sampler import ShuffledLengthGroups, sampler_mixins

    assert sampler_mixins(True) == (ShuffledLengthGroups,)
    assert registry.active_patches()["shuffled_length_groups"] == "on"

    def renamed(self: Any, dataset: Any = None) -> None:
        return None

    monkeypatch.setattr(Trainer, "_get_train_sampler", renamed)
    with caplog.at_level(logging.WARNING, logger="pipeline.train.patches.registry"):
        assert sampler_mixins(True) == ()
    assert "Trainer._get_train_sampler now takes (self, dataset)" in caplog.text
    assert sampler_mixins(False) == ()
    assert registry.active_patches()["shuffled_length_groups"] == "off: train.group_by_length is off"


def test_a_moved_generation_method_turns_merged_rollouts_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from contextlib import nullcontext

    from trl import RLOOTrainer

    from pipeline.train.patches.trl_rollouts import merged_rollouts

    (mixin,) = merged_rollouts(lambda model: nullcontext())
    assert "_generate_single_turn" in vars(mixin)
    assert registry.active_patches()["merged_rollouts"] == "on"
    monkeypatch.delattr(RLOOTrainer, "_generate_single_turn")
    with caplog.at_level(logging.WARNING, logger="pipeline.train.patches.registry"):
        assert merged_rollouts(lambda model: nullcontext()) == ()
    assert "RLOOTrainer._generate_single_turn is gone" in caplog.text
    assert registry.active_patches()["merged_rollouts"].startswith("off: trl ")


def test_missing_torch_probes_mean_no_native_bf16(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.train.patches.torch_cpu import PROBES, cpu_has_native_bf16

    for probe in PROBES:
        monkeypatch.delattr(torch.cpu, probe)
    with caplog.at_level(logging.WARNING, logger="pipeline.train.patches.registry"):
        assert cpu_has_native_bf16() is False
    assert "torch.cpu._is_avx512_bf16_supported, _is_amx_tile_supported gone" in caplog.text


def test_attention_implementation_reads_the_loaded_kernel(tiny_model_dir: Any) -> None:
    from transformers import AutoModelForCausalLM

    from pipeline.train.patches.transformers_attention import attention_implementation

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    assert attention_implementation(model) == "eager"
    assert attention_implementation(object()) is None


def test_the_experimental_stages_still_fit_the_installed_trl() -> None:
    """train.stage orpo and simpo build trl.experimental's trainers, which may move in any trl release."""
    from pipeline.train.stages import experimental

    problem = experimental.canary()
    assert problem is None, f"{registry.library_version('trl')} broke the orpo/simpo stages: {problem}"


def test_a_moved_experimental_parameter_fails_validate_in_one_line_naming_trl(
    monkeypatch: pytest.MonkeyPatch, make_recipe: Any
) -> None:
    from pipeline.config.loader import load_recipe
    from pipeline.errors import RecipeError
    from pipeline.train.crosscheck import check_against_libraries
    from pipeline.train.stages.build import trl_class

    config = trl_class("trl.experimental.cpo:CPOConfig")

    def renamed(  # a release that renamed SimPO's margin and dropped CPO's NLL weight
        self: Any,
        max_length: int = 1024,
        beta: float = 0.1,
        loss_type: str = "simpo",
        target_margin: float = 0.5,
        disable_dropout: bool = True,
        **kwargs: Any,
    ) -> None:
        return None

    monkeypatch.setattr(config, "__init__", renamed)
    recipe = load_recipe(str(make_recipe(train={"stage": "simpo"})), [])
    with pytest.raises(RecipeError) as caught:
        check_against_libraries(recipe)
    message = str(caught.value)
    assert "\n" not in message and registry.library_version("trl") in message
    assert "trl.experimental.cpo:CPOConfig no longer takes simpo_gamma, cpo_alpha" in message
    # ORPO relies on none of CPO's names: it still validates.
    check_against_libraries(load_recipe(str(make_recipe(train={"stage": "orpo"})), []))
