"""Patch accelerate: an FSDP launch of CPU processes trains with FSDP instead of plain DDP.

accelerate marks a CPU-only multi-process run MULTI_CPU, and the private `AcceleratorState.__init__` turns on
the FSDP plugin only for multi-device types (MULTI_GPU, MULTI_XPU, ...), so `cpu-fsdp.yaml` trained DDP.
FSDP2 shards over gloo as well. While this patch is on, the next AcceleratorState built on a MULTI_CPU state
with an FSDP plugin ends the way accelerate's own FSDP branch ends on GPUs (distributed_type FSDP, the plugin,
its mixed precision); accelerate's original __init__ is back as soon as that state exists. Processes,
devices and the process group stay as accelerate set them up.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from pipeline.train.patches.registry import record, turned_off

LIBRARY = "accelerate"
NAME = "fsdp_on_cpu"
# What accelerate's FSDP branch of AcceleratorState.__init__ does; the patch repeats exactly these steps.
BRANCH = (
    "self.distributed_type = DistributedType.FSDP",
    "fsdp_plugin.set_mixed_precision(self._mixed_precision)",
    "self.fsdp_plugin = fsdp_plugin",
    'PartialState._shared_state["distributed_type"] = self.distributed_type',
)
_ORIGINAL: dict[str, Any] = {}  # "__init__" -> accelerate's own, while the patch is installed


def canary() -> str | None:
    """None while AcceleratorState.__init__ takes fsdp_plugin and its FSDP branch is the one BRANCH repeats."""
    from accelerate.state import AcceleratorState

    init = _ORIGINAL.get("__init__", AcceleratorState.__init__)
    if "fsdp_plugin" not in inspect.signature(init).parameters:
        return "AcceleratorState.__init__ takes no fsdp_plugin"
    source = inspect.getsource(init)
    missing = [step for step in BRANCH if step not in source]
    return f"AcceleratorState.__init__ no longer runs `{missing[0]}`" if missing else None


def _fsdp_on_multi_cpu(state: Any, plugin: Any) -> None:
    """accelerate's FSDP branch (BRANCH) on a state accelerate left MULTI_CPU."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    state.distributed_type = DistributedType.FSDP
    if state._mixed_precision != "no":
        plugin.set_mixed_precision(state._mixed_precision)
    state.fsdp_plugin = plugin
    PartialState._shared_state["distributed_type"] = state.distributed_type


def fsdp_on_cpu_processes() -> bool:
    """Install the patch for the next AcceleratorState (the Trainer's); False, with one WARNING line, when the
    installed accelerate no longer fits it (the run then trains DDP, as accelerate decides)."""
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    problem = canary()
    if problem is not None:
        return turned_off(NAME, LIBRARY, problem, "an FSDP launch of CPU processes trains plain DDP")
    if "__init__" in _ORIGINAL:
        return record(NAME, True)
    original = AcceleratorState.__init__
    signature = inspect.signature(original)

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        from accelerate.state import is_initialized

        fresh = not is_initialized()
        original(self, *args, **kwargs)
        plugin = signature.bind(self, *args, **kwargs).arguments.get("fsdp_plugin")
        if not fresh:  # accelerate skipped its set-up too: the Trainer's state is still to come
            return
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            _fsdp_on_multi_cpu(self, plugin)
        restore()

    _ORIGINAL["__init__"] = original
    AcceleratorState.__init__ = init
    return record(NAME, True)


def restore() -> None:
    """Put accelerate's own AcceleratorState.__init__ back (a no-op when the patch is not installed)."""
    from accelerate.state import AcceleratorState

    if "__init__" in _ORIGINAL:
        AcceleratorState.__init__ = _ORIGINAL.pop("__init__")
