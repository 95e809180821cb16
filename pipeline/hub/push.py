"""Push a finished run (adapter or merged model, card, metrics, manifest, recipe) to the Hugging Face Hub.

The token comes from HF_TOKEN or the stored `hf auth login` (huggingface_hub.get_token); it is passed to the
client and never printed, logged or written. Every failure becomes one HubError line; the run folder is only
read (the card naming the repo id is built in a temporary folder).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.config.loader import validate_recipe_dict
from pipeline.config.schema import HubSpec, Recipe
from pipeline.errors import HubError
from pipeline.ranks import is_main_process
from pipeline.runs.record import RECIPE, RunRecord

log = logging.getLogger(__name__)

# What an adapter or merged-model folder contributes: weights as safetensors only (never pickles such as
# training_args.bin), configs, tokenizer and chat template. The folder's own README.md gives way to our card.
MODEL_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "*.json",
    "*.jinja",
    "*.model",
    "*.txt",
    "tokenizer*",
)
RUN_FILES = ("README.md", "metrics.json", "manifest.json", "recipe.yaml", "loss_curve.png")


@dataclass(frozen=True)
class PushResult:
    """Where a push went."""

    repo_id: str
    revision: str
    commit_url: str
    files: tuple[str, ...]


def _token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, then push again.")
    return token


def _load_run(run_dir: Path) -> tuple[Recipe, dict]:
    run = RunRecord.load(run_dir)
    if run.recipe is None:
        raise HubError(f"{run_dir}: no recipe.yaml; give a run folder written by `pipeline finetune`.")
    recipe = validate_recipe_dict(run.recipe, str(run_dir / RECIPE), name=run.name)
    return recipe, run.metrics.as_dict() if run.metrics is not None else {}


def _model_folder(run_dir: Path, merged: bool) -> Path:
    if not merged:
        folder = run_dir / "adapter"
        if not folder.is_dir():
            raise HubError(f"{run_dir}: no adapter/ folder; the run did not finish (resume or re-run it).")
        return folder
    folder = run_dir / "merged"
    if not (folder / "config.json").is_file():
        from pipeline.models.merge import merge_run

        log.info("No merged model in %s yet: merging first", run_dir)
        folder = merge_run(str(run_dir), None, "auto", None).output
    return folder


def push_files(run_dir: Path, merged: bool) -> dict[str, Path]:
    """Repository path -> local file: the model folder at the root, then metrics, manifest, recipe, curve."""
    folder = _model_folder(run_dir, merged)
    files = {
        p.name: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != "README.md" and any(fnmatch.fnmatch(p.name, g) for g in MODEL_PATTERNS)
    }
    if not any(name.endswith(".safetensors") for name in files):
        raise HubError(f"{folder}: no .safetensors weights to push; re-save the run with safetensors.")
    files.update({name: run_dir / name for name in RUN_FILES if (run_dir / name).is_file()})
    return files


def _stage_card(run_dir: Path, files: dict[str, Path], staging: Path, repo_id: str, merged: bool) -> None:
    """Write the card for repo_id (and a missing loss curve) into staging; the run folder is not touched."""
    from pipeline.hub.card import LOSS_IMAGE, build_model_card, write_loss_curve

    recipe, metrics = _load_run(run_dir)
    if LOSS_IMAGE not in files and write_loss_curve(metrics, staging / LOSS_IMAGE):
        files[LOSS_IMAGE] = staging / LOSS_IMAGE
    hardware = metrics.get("train", {}).get("hardware")
    card = build_model_card(
        recipe,
        metrics,
        repo_id=repo_id,
        hardware=hardware,
        merged=merged,
        loss_image=LOSS_IMAGE if LOSS_IMAGE in files else None,
    )
    (staging / "README.md").write_text(str(card), encoding="utf-8")
    files["README.md"] = staging / "README.md"


def _message(exc: Exception, repo_id: str, token: str) -> str:
    """One line for a failed Hub call, with the token scrubbed from whatever the server said."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    status = getattr(getattr(exc, "response", None), "status_code", None)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    detail = " ".join(lines[:3]).replace(token, "***")
    if isinstance(exc, HfHubHTTPError) and status == 401:
        return "the Hub rejected the token (401); set a valid write token in HF_TOKEN or run `hf auth login`."
    if isinstance(exc, HfHubHTTPError) and status == 403:
        return f"the Hub refused the push to {repo_id} (403: no write access); check the namespace and token."
    if isinstance(exc, HfHubHTTPError):
        return f"the Hub refused the push to {repo_id} ({status}): {detail}"
    if isinstance(
        exc, (httpx2.TransportError, OfflineModeIsEnabled, OSError)
    ):  # HfHubHTTPError is an OSError
        reason = type(exc).__name__
        return f"cannot reach the Hub at {constants.ENDPOINT} ({reason}); check the network or HF_ENDPOINT."
    return f"the push to {repo_id} failed ({type(exc).__name__}): {detail}"


def push_run(
    run_dir: str | Path, repo_id: str, private: bool = True, revision: str | None = None, merged: bool = False
) -> PushResult:
    """Push a run's adapter (or merged model) with a model card, metrics, manifest and recipe to repo_id."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HubError(f"{run_dir}: no such run folder; `ls runs/` lists the runs.")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubError(f"repo id '{repo_id}' must be ORG/NAME (e.g. my-user/{run_dir.name}).")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise HubError("HF_HUB_OFFLINE=1 is set: pushing needs the network; unset it and push again.")
    token = _token()
    files = push_files(run_dir, merged)
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    branch = revision or "main"
    what = "merged model" if merged else "adapter"
    with tempfile.TemporaryDirectory(prefix="pipeline-push-") as staging:
        _stage_card(run_dir, files, Path(staging), repo_id, merged)
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()
        ]
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            if branch != "main":
                api.create_branch(repo_id, branch=branch, exist_ok=True)
            info = api.create_commit(
                repo_id,
                operations=operations,
                revision=branch,
                commit_message=f"Upload {what} from run {run_dir.name}",
            )
        except Exception as exc:
            raise HubError(_message(exc, repo_id, token)) from None
    _warn_local_base(files)  # after the push, so that a failed push stays one line
    return PushResult(
        repo_id=repo_id, revision=branch, commit_url=info.commit_url, files=tuple(sorted(files))
    )


def _warn_local_base(files: dict[str, Path]) -> None:
    import json

    config = files.get("adapter_config.json")
    base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path", "") if config else ""
    if base and (base.startswith((".", "/", "~")) or base.count("/") != 1):
        log.warning(
            "adapter_config.json names a local base model (%s): others cannot load this adapter by id "
            "unless they have that folder; train from a Hub id to make it portable.",
            base,
        )


def push_after_training(run_dir: Path, hub: HubSpec) -> PushResult | None:
    """The end-of-finetune push when hub.push: main process only; a failure warns, the run stays."""
    if not hub.push or not is_main_process():
        return None
    assert hub.repo_id is not None  # HubSpec enforces it
    try:
        result = push_run(run_dir, hub.repo_id, private=hub.private, revision=hub.revision)
    except HubError as exc:
        log.warning(
            "push skipped: %s The run is complete in %s; retry with `pipeline push %s --repo-id %s`.",
            exc,
            run_dir,
            run_dir,
            hub.repo_id,
        )
        return None
    log.info("Pushed to %s (%s): %s", result.repo_id, result.revision, result.commit_url)
    return result
