"""The studio's pages and JSON endpoints through FastAPI's TestClient (no browser, no child processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from studio_runs import write_run

from pipeline.config.loader import list_recipe_files, load_recipe
from pipeline.errors import RecipeError
from pipeline.studio.app import create_app


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    runs = tmp_path / "runs"
    write_run(runs, "lora-small-20261201-000000", [2.0, 1.5, 1.2])
    write_run(runs, "lora-small-20261202-000000", [2.1, 1.4, 1.0], {"adapter": {"r": 8}})
    return TestClient(create_app(runs))


@pytest.mark.parametrize(
    "url",
    [
        "/runs",
        "/recipes",
        "/recipes/edit?recipe=lora-small",
        "/recipes/edit?recipe=dpo-small",
        "/train",
        "/chat",
        "/data?recipe=dpo-small",
        "/runs/lora-small-20261201-000000",
        "/runs/lora-small-20261201-000000/preference",
        "/runs/lora-small-20261201-000000/ship",
        "/compare?run=lora-small-20261201-000000&run=lora-small-20261202-000000",
    ],
)
def test_every_page_renders(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 200, response.text
    assert "<nav>" in response.text and "cdn" not in response.text.lower()


def test_recipes_page_lists_every_shipped_recipe(client: TestClient) -> None:
    page = client.get("/recipes").text
    for path in list_recipe_files():
        assert f'data-recipe="{path.stem}"' in page or f'/{path.stem}"' in page


def test_validation_returns_the_loaders_own_error_lines(client: TestClient) -> None:
    overrides = ["train.learning_rate=-1", "train.lerning_rate=2"]
    with pytest.raises(RecipeError) as expected:
        load_recipe("lora-small", overrides)
    result = client.post(
        "/api/recipes/validate", json={"recipe": "lora-small", "overrides": overrides}
    ).json()
    assert result == {"ok": False, "errors": str(expected.value).splitlines()}
    assert "did you mean 'learning_rate'?" in result["errors"][1]
    ok = client.post("/api/recipes/validate", json={"recipe": "lora-small", "overrides": ["adapter.r=8"]})
    assert ok.json() == {"ok": True, "errors": []}


def test_yaml_errors_name_the_line(client: TestClient) -> None:
    result = client.post(
        "/api/recipes/validate", json={"recipe": "lora-small", "yaml": "model: {}\nmodel: {}\n"}
    )
    assert result.json()["errors"][0].endswith(
        "lora-small.yaml:2: key 'model' appears twice (first on line 1)"
    )


def test_save_writes_a_new_recipe_beside_the_original_and_never_overwrites(tmp_path: Path) -> None:
    source = tmp_path / "recipes" / "mine.yaml"
    source.parent.mkdir()
    source.write_text(
        Path(list_recipe_files()[0]).read_text(encoding="utf-8").replace("data/", "../recipes/data/")
    )
    client = TestClient(create_app(tmp_path / "runs"))
    data = {"recipe": str(load_recipe("lora-small").path), "overrides": ["adapter.r=4"], "name": "lora-r4"}
    saved = client.post("/api/recipes/save", json=data).json()
    target = Path(saved["path"])
    try:
        assert target.parent == load_recipe("lora-small").path.parent
        assert yaml.safe_load(target.read_text(encoding="utf-8"))["adapter"]["r"] == 4
        assert load_recipe(str(target)).adapter.r == 4
        again = client.post("/api/recipes/save", json=data)
        assert again.status_code == 400 and "already exists" in again.json()["error"]
    finally:
        target.unlink()
    bad = client.post("/api/recipes/save", json={**data, "overrides": ["adapter.r=0"], "name": "bad"})
    assert bad.status_code == 400 and "adapter.r" in bad.json()["error"]


def test_ledger_lists_runs_newest_first_with_their_figures(client: TestClient) -> None:
    rows = client.get("/api/runs").json()
    assert [r["folder"] for r in rows] == ["lora-small-20261202-000000", "lora-small-20261201-000000"]
    assert rows[0]["state"] == "finished" and rows[0]["step"] == 3 and rows[0]["loss"] == 1.0
    assert rows[0]["stage"] == "sft" and rows[0]["method"] == "lora" and len(rows[0]["data"]) == 12


def test_compare_shows_the_recipe_keys_that_differ(client: TestClient) -> None:
    page = client.get("/compare?run=lora-small-20261201-000000&run=lora-small-20261202-000000").text
    assert "<code>adapter.r</code>" in page and "<code>8</code>" in page
    assert "train.output_dir" not in page


def test_events_stream_replays_the_log_and_ends(client: TestClient) -> None:
    with client.stream("GET", "/api/runs/lora-small-20261201-000000/events") as response:
        text = "".join(response.iter_text())
    events = [line for line in text.splitlines() if line.startswith('data: {"schema_version"')]
    assert len(events) == 6 and '"kind":"finished"' in events[-1]
    size = (client.app.state.runs_dir / "lora-small-20261201-000000" / "events.jsonl").stat().st_size
    assert text.rstrip().endswith(f'event: end\ndata: {{"offset": {size}}}')


def test_run_names_cannot_escape_the_runs_folder(client: TestClient) -> None:
    assert client.get("/api/runs/..%2F..%2Fetc/events").status_code in (400, 404)
    assert client.post("/api/runs/../resume").status_code in (400, 404, 405)


def test_ship_refuses_bad_values_in_one_line(client: TestClient) -> None:
    url = "/api/runs/lora-small-20261201-000000/ship"
    assert "repository" in client.post(url, json={"action": "push", "repo_id": "no-slash"}).json()["error"]
    assert "q3" in client.post(url, json={"action": "export", "dtype": "q3"}).json()["error"]
    assert client.post(url, json={"action": "rm"}).status_code == 400


def test_stopping_a_run_the_studio_did_not_start_says_where_to_stop_it(client: TestClient) -> None:
    response = client.post("/api/runs/lora-small-20261201-000000/stop")
    assert response.status_code == 400 and "Ctrl-C" in response.json()["error"]


def test_ship_page_never_shows_the_token(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secretvalue123")
    page = client.get("/runs/lora-small-20261201-000000/ship").text
    assert "hf_secretvalue123" not in page and "HF_TOKEN is set" in page


def test_ship_page_offers_every_export_type_with_its_size(tmp_path: Path) -> None:
    import json

    import numpy as np
    from safetensors.numpy import save_file

    from pipeline.export.command import DTYPES, FORMATS

    runs, base = tmp_path / "runs", tmp_path / "base"
    base.mkdir()
    save_file(
        {"a": np.zeros((1000, 1000), np.float32), "b": np.zeros((1000,), np.float32)},
        str(base / "m.safetensors"),
    )
    folder = write_run(runs, "lora-small-20261203-000000", [2.0])
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["model"]["folder"] = str(base)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    page = TestClient(create_app(runs)).get("/runs/lora-small-20261203-000000/ship").text
    assert "1.0M weights in the base" in page
    for dtype in DTYPES:
        assert f'<option value="{dtype}">' in page
    assert "f32 (4 bytes/weight, about 4 MiB)" in page and "q4_k_m (0.606 bytes/weight, about 1 MiB)" in page
    for fmt in FORMATS:
        assert f"<option>{fmt}</option>" in page


def test_estimate_runs_pipeline_tokens_on_the_edited_recipe(client: TestClient) -> None:
    submitted = []

    class Job:
        def as_dict(self) -> dict[str, str]:
            return {"id": "1"}

    def submit(kind: str, title: str, argv: list[str]) -> Job:
        submitted.append((kind, title, argv))
        return Job()

    client.app.state.jobs.submit = submit  # type: ignore[attr-defined]
    answer = client.post(
        "/api/recipes/estimate", json={"recipe": "lora-small", "overrides": ["train.max_length=256"]}
    )
    assert answer.status_code == 200 and answer.json() == {"id": "1"}
    ((kind, title, argv),) = submitted
    assert (kind, title) == ("task", "tokens lora-small")
    assert (
        argv[-3:-1] == ["tokens", str(load_recipe("lora-small").path)] and argv[-1] == "train.max_length=256"
    )
    bad = client.post(
        "/api/recipes/estimate", json={"recipe": "lora-small", "overrides": ["train.max_length=-1"]}
    )
    assert bad.status_code == 400 and "train.max_length" in bad.json()["error"]
    assert 'id="estimate"' in client.get("/recipes/edit?recipe=lora-small").text
