"""Training throughput: FLOPs per token from the model's layers, the measured roofline and its cache, the
share a run records."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from pipeline.config.training import TrainSpec
from pipeline.train import roofline as roofline_module
from pipeline.train.roofline import Gemm, gpu_peak, roofline
from pipeline.train.throughput import DataShape, ThroughputMeter, data_shape, flops_per_token, step_gemms


def _lora(model: Any, r: int = 4) -> Any:
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=r, target_modules=["q_proj", "v_proj"]))


def test_flops_count_forward_input_and_weight_gradients(tiny_model: Any) -> None:
    config = tiny_model.config  # hidden 32, intermediate 64, 2 layers, 4 heads of 8, 2 KV heads
    shape = DataShape(tokens_per_step=100, attention_length=10.0, trained_share=0.5)
    h, i, kv, vocab = 32, 64, 16, config.vocab_size
    body = config.num_hidden_layers * (h * h + 2 * h * kv + h * h + 3 * h * i)
    attention = 6 * config.num_hidden_layers * 32 * 10.0
    full = flops_per_token(tiny_model, shape, head_share=1.0)  # every weight trains: 6 per weight
    assert full == pytest.approx(6 * (body + h * vocab) + attention)
    model = _lora(tiny_model)
    lora = config.num_hidden_layers * ((h * 4 + 4 * h) + (h * 4 + 4 * kv))  # q: 32->4->32, v: 32->4->16
    frozen = flops_per_token(model, shape, head_share=0.5)
    assert frozen == pytest.approx(4 * body + 4 * h * vocab * 0.5 + 6 * lora + attention)


def test_step_gemms_are_the_layer_shapes_at_the_step_size(tiny_model: Any) -> None:
    model = _lora(tiny_model)
    shape = DataShape(tokens_per_step=100, attention_length=10.0, trained_share=0.25)
    gemms = step_gemms(model, shape, head_share=0.25)
    head = [g for g in gemms if model.config.vocab_size in (g.k, g.n)]
    assert {(g.m, g.k, g.n) for g in head} == {
        (25, 32, model.config.vocab_size),
        (25, model.config.vocab_size, 32),
    }
    lora_a = [g for g in gemms if (g.k, g.n) == (32, 4)]
    assert lora_a and all(g.m == 100 for g in lora_a)
    weight_grads = [
        g for g in gemms if g.k == 32 and g.m in (4,)
    ]  # A's weight gradient: (32 x 100) @ (100 x 4)
    assert sum(g.flops for g in gemms) > 0 and not weight_grads


def test_gpu_peaks_by_name() -> None:
    assert gpu_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_peak("NVIDIA H100 PCIe") == 756e12
    assert gpu_peak("NVIDIA H200") == 989e12
    assert gpu_peak("Some Future Accelerator") is None


def test_roofline_keeps_the_best_measurement_per_machine_and_shapes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A measurement slowed by other processes must not lower the roofline a later run is held against."""
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    rates = iter([100e9, 40e9, 150e9, 7e9, 1e9])
    monkeypatch.setattr(roofline_module, "measure", lambda gemms, dtype, device="cpu": next(rates))
    gemms = [Gemm(64, 32, 32), Gemm(64, 32, 64, count=2)]
    assert roofline(gemms, torch.float32, "cpu").flops_per_second == 100e9
    assert roofline(gemms, torch.float32, "cpu").flops_per_second == 100e9  # a busy 40 keeps 100
    assert roofline(gemms, torch.float32, "cpu").flops_per_second == 150e9
    assert roofline(gemms, torch.bfloat16, "cpu").flops_per_second == 7e9  # another dtype, its own best
    assert roofline(gemms, torch.float32, "cpu").as_dict()["source"] == (
        f"measured GEMMs (float32, {torch.get_num_threads()} threads)"
    )


def test_measure_times_each_shape_once_and_weighs_it_by_its_count(monkeypatch: pytest.MonkeyPatch) -> None:
    timed = []

    def fake_time(gemm: Gemm, dtype: torch.dtype, device: str) -> float:
        timed.append((gemm.m, gemm.k, gemm.n))
        return 0.001 if gemm.n == 64 else 0.004

    monkeypatch.setattr(roofline_module, "time_gemm", fake_time)
    gemms = [Gemm(64, 64, 64, count=3), Gemm(64, 64, 64), Gemm(64, 64, 128, count=2)]
    rate = roofline_module.measure(gemms, torch.float32)
    assert sorted(timed) == [(64, 64, 64), (64, 64, 128)]  # one timing per distinct shape
    flops = 2 * 64 * 64 * 64 * 4 + 2 * 64 * 64 * 128 * 2
    assert rate == pytest.approx(flops / (0.001 * 4 + 0.004 * 2))


def test_data_shape_from_token_counts() -> None:
    from datasets import Dataset

    rows = Dataset.from_dict({"num_tokens": [10, 30, 600], "num_trained": [5, 10, 600]})
    train = TrainSpec(batch_size=2, grad_accum=3, max_length=100)
    shape = data_shape(rows, train)
    assert shape is not None
    assert shape.tokens_per_step == pytest.approx(2 * 3 * (10 + 30 + 100) / 3)  # truncated to max_length
    assert shape.attention_length == pytest.approx((100 + 900 + 10000) / 140)
    assert shape.trained_share == pytest.approx(115 / 140)
    assert data_shape(Dataset.from_dict({"prompt": ["a"]}), train) is None
    streamed = rows.to_iterable_dataset()  # data.streaming: the first records of the stream
    assert data_shape(streamed, train) == shape


def test_meter_reports_steady_state_tokens_per_second(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from datasets import Dataset

    clock = iter([0.0, 5.0, 5.0, 6.0, 6.0, 7.0])  # a slow first step (5 s), then 1 s per step
    monkeypatch.setattr("pipeline.train.throughput.time.perf_counter", lambda: next(clock))
    monkeypatch.setattr(roofline_module, "measure", lambda gemms, dtype, device="cpu": 1e9)
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    rows = Dataset.from_dict({"num_tokens": [50] * 4, "num_trained": [25] * 4})
    meter = ThroughputMeter(TrainSpec(batch_size=2), rows)
    state = SimpleNamespace(is_world_process_zero=False)
    for _ in range(3):
        meter.on_step_begin(None, state, None)
        meter.on_step_end(None, state, None)
    meter.on_log(None, state, None, logs={"loss": 1.0, "num_tokens": 300})
    meter.on_train_end(SimpleNamespace(bf16=False, fp16=False, world_size=1), state, None, model=tiny_model)
    summary = meter.summary
    assert summary["tokens_per_second"] == pytest.approx(100.0)  # 300 tokens / 3 steps / 1 s
    assert summary["achieved_gflops"] == pytest.approx(summary["flops_per_token"] * 100 / 1e9, abs=1e-3)
    assert summary["roofline_share"] == pytest.approx(summary["flops_per_token"] * 100 / 1e9, rel=1e-2)
