"""README.md's "bring your own data" walkthrough, run command by command in a temporary folder (as litgpt
tests its README): the README's own JSONL lines and recipe, the commands of its marked block, in order.

To stay within about two minutes on 2 busy cores, the commands that load a recipe get `model.name=<tiny model>`
and finetune trains one step; `serve` runs in the background on a free port while `curl` queries it; `push`
goes to the in-memory test Hub.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hubserver import FakeHub
from live_server import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
START, END = "<!-- walkthrough", "<!-- /walkthrough -->"
TOKEN = "hf_WALKTHROUGHfaketoken12345"
STEPS = (
    "pipeline data audit",
    "pipeline plan",
    "pipeline finetune",
    "pipeline chat",
    "pipeline serve",
    "curl",
)
STEPS_AFTER_SERVE = ("pipeline merge", "pipeline push")


def walkthrough_commands(text: str) -> list[str]:
    """The shell commands of the README's marked block: continuation lines joined, trailing comments dropped."""
    assert START in text and END in text, f"README.md lacks the {START} ... {END} markers"
    block = text.split(START, 1)[1].split(END, 1)[0]
    found = re.search(r"```bash\n(.*?)```", block, re.S)
    assert found, "the walkthrough block holds no ```bash code block"
    commands, pending = [], ""
    for line in found.group(1).splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).rstrip()
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        if pending + line:
            commands.append((pending + line).strip())
        pending = ""
    return commands


def first_block(text: str, language: str) -> str:
    """The first ```language code block of the README (the walkthrough's data file or recipe)."""
    found = re.search(rf"```{language}\n(.*?)```", text, re.S)
    assert found, f"README.md has no ```{language} block"
    return found.group(1)


def shell(command: str, folder: Path, env: dict[str, str]) -> str:
    """Run one README command with bash in `folder`; its stdout, after asserting exit code 0."""
    done = subprocess.run(
        ["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (
        f"`{command}` exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def start_server(command: str, folder: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    """Start `pipeline serve ...` on `port` and wait until /v1/models answers."""
    server = subprocess.Popen(
        ["bash", "-c", f"exec {command} --port {port}"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None, server.stdout.read() if server.stdout else ""
        assert time.monotonic() < deadline, "the server did not come up within 120 s"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.5)


def test_walkthrough_blocks_name_every_step() -> None:
    commands = walkthrough_commands(README.read_text(encoding="utf-8"))
    for step in (*STEPS, *STEPS_AFTER_SERVE):
        assert any(step in c for c in commands), f"the README walkthrough lost its `{step}` step"


@pytest.mark.slow
def test_readme_walkthrough_runs(tmp_path: Path, tiny_model_dir: Path) -> None:
    readme = README.read_text(encoding="utf-8")
    (tmp_path / "my-data.jsonl").write_text(first_block(readme, "jsonl"), encoding="utf-8")
    (tmp_path / "my-recipe.yaml").write_text(first_block(readme, "yaml"), encoding="utf-8")
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT", "PIPELINE_API_KEY")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    tiny = f"model.name={shlex.quote(str(tiny_model_dir))}"
    port = free_port()
    server: subprocess.Popen | None = None
    outputs: dict[str, str] = {}
    try:
        with FakeHub(TOKEN) as hub:
            for command in walkthrough_commands(readme):
                step_env = env
                if command.startswith(("pipeline data audit", "pipeline plan")):
                    command = f"{command} {tiny}"
                elif command.startswith("pipeline finetune"):
                    command = f"{command} {tiny} train.max_steps=1 eval.max_new_tokens=4"
                elif command.startswith("pipeline chat") or "| pipeline chat" in command:
                    command = f"{command} --max-new-tokens 4"
                elif command.startswith("pipeline serve"):
                    server = start_server(command, tmp_path, env, port)
                    continue
                elif command.startswith("curl"):
                    command = command.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
                elif command.startswith("pipeline push"):
                    step_env = {**env, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN}
                    step_env.pop("HF_HUB_OFFLINE")
                    step_env["HF_HOME"] = str(tmp_path / "hf-home")
                step = "curl" if command.startswith("curl") else command
                outputs[step] = shell(command, tmp_path, step_env)
                if command.startswith("curl") and server is not None:
                    server.terminate()
                    server.wait(30)
                    server = None
            pushed = {repo_id: hub.files(repo_id) for (_, repo_id) in hub.repos}
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)

    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert run_dir.name.startswith("my-recipe-")
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["base"]["perplexity"] > 0 and metrics["adapted"]["perplexity"] > 0
    assert (tmp_path / "runs" / "my-recipe-data-audit.html").is_file()
    reply = json.loads(outputs["curl"])
    assert reply["model"] == "my-model" and isinstance(reply["choices"][0]["message"]["content"], str)
    assert (run_dir / "merged" / "model.safetensors").is_file()
    (repo_id,) = pushed
    assert repo_id.endswith("/my-model")
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(pushed[repo_id])
    chat = next(out for cmd, out in outputs.items() if "pipeline chat" in cmd)
    assert chat.strip(), "chat printed no answer"
