"""eval.judge against our own `pipeline serve` (the FastAPI app over the tiny model, on 127.0.0.1): every
prompt is judged in both orders and the result is a win rate with its interval."""

from __future__ import annotations

from pathlib import Path

from live_server import live_server

from pipeline.config.training import JudgeSpec
from pipeline.evaluation.judge import judge_answers
from pipeline.inference.engine import build_engine
from pipeline.inference.server import create_app
from pipeline.models.artifacts import load_target


def test_judge_over_pipeline_serve(tiny_model_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TEST_JUDGE_KEY", "k-123")
    engine = build_engine(load_target(str(tiny_model_dir)), "judge", {}, 256, 4)
    with live_server(create_app(engine, api_key="k-123")) as url:
        spec = JudgeSpec(endpoint=url, model="judge", api_key_env="TEST_JUDGE_KEY", max_tokens=4)
        out = judge_answers(spec, ["What is 2+2?", "Name a colour."], ["4", "red"], ["four", "blue"])
    assert "error" not in out, out
    assert out["n"] == 2 and len(out["per_example"]) == 2 and 0 <= out["win_rate"] <= 1
    assert all(set(row) == {"adapted_as_b", "adapted_as_a", "score"} for row in out["per_example"])
    low, high = out["win_rate_ci95"]
    assert 0 <= low <= out["win_rate"] <= high <= 1
