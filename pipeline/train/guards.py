"""Guards that turn silent damage into clear errors: non-finite loss, full or read-only disks, ../ escapes."""

from __future__ import annotations

import errno
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from pipeline.config.schema import AdapterSpec
from pipeline.errors import PipelineError, RecipeError, TrainingError

WRITABLE_FIX = "set train.output_dir to a writable folder"
FREE_FIX = "free disk space, then resume with --resume"
STORAGE_REASONS = {
    errno.ENOSPC: ("the disk is full", FREE_FIX),
    errno.EDQUOT: ("the disk quota is exceeded", FREE_FIX),
    errno.EROFS: ("the file system is read-only", WRITABLE_FIX),
    errno.EACCES: ("permission denied", WRITABLE_FIX),
    errno.EPERM: ("permission denied", WRITABLE_FIX),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", WRITABLE_FIX),
}
# How torch.save and safetensors report a failed write (they do not raise OSError).
DISK_FULL_TEXT = ("No space left on device", "file write failed", "StorageFull")


class StorageError(PipelineError):
    """An output could not be written: disk full, quota, read-only or permission denied."""

    exit_code = 8


def storage_error(exc: BaseException) -> StorageError | None:
    """A one-line StorageError for a failed write anywhere in exc's chain, or None if it is something else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_REASONS:
            reason, fix = STORAGE_REASONS[current.errno]
            return StorageError(f"{current.filename or 'an output file'}: cannot write ({reason}); {fix}.")
        if any(text in str(current) for text in DISK_FULL_TEXT):
            return StorageError(f"cannot write an output file (the disk is full); {FREE_FIX}.")
        current = current.__cause__ or current.__context__
    return None


class NonFiniteGuard(TrainerCallback):
    """Stops training before an optimizer step on a NaN/inf gradient (or a logged non-finite loss), so no
    checkpoint with broken weights is ever saved; the error names the step and the last good checkpoint."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        if args.fp16 or model is None:
            return  # fp16's GradScaler skips overflowing steps by design
        import torch

        from pipeline.train.signals import any_rank

        grads = [p.grad for p in model.parameters() if p.grad is not None]
        bad = bool(grads) and not bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)).item())
        if any_rank(bad, args.device):
            self._stop(args, state, "loss or gradient")

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        loss = (logs or {}).get("loss")
        if isinstance(loss, float) and not math.isfinite(loss):
            self._stop(args, state, "loss")

    @staticmethod
    def _stop(args: Any, state: Any, what: str) -> None:
        from pipeline.train.resume import latest_checkpoint

        checkpoint = latest_checkpoint(Path(args.output_dir).parent)
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was saved yet"
        raise TrainingError(
            f"non-finite {what} at step {state.global_step + 1}; training stopped before updating the "
            f"weights and {kept}; lower train.learning_rate (or check the data), then resume with "
            "--resume --force or start over."
        )


def check_target_modules(adapter: AdapterSpec, model: Any, source: str) -> None:
    """Fail early, naming the recipe (source) and field, when adapter.target_modules lists a module the model
    does not have."""
    targets = adapter.target_modules
    if adapter.method != "lora" or isinstance(targets, str):
        return  # 'all-linear' or a regular expression: peft resolves those itself
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} | {
        n for n, _ in model.named_modules()
    }
    missing = [t for t in targets if t not in names and not any(n.endswith(f".{t}") for n in names)]
    if missing:
        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"}
        )
        raise RecipeError(
            f"{source}: adapter.target_modules: {', '.join(missing)} not in the model; "
            f"its linear layers are {', '.join(linear)} (or use 'all-linear')."
        )
