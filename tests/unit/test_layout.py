"""The package layout holds: layers point down, and private names of libraries are touched only in train/patches/.

Layers, lowest first (a module may import its own package and any lower layer, never a peer or a higher one):
errors, ranks -> files (and train.cpu_head, train.sampling: what the patches install) -> train.patches -> config -> runs ->
models -> data -> train, inference -> evaluation -> hub, planning, export -> workflow -> studio -> cli -> __main__.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"
# train.cpu_head and train.sampling sit with files: a torch kernel and a sampler that train.patches installs.
LAYERS = [
    {"errors", "ranks", "__init__"},  # ranks: this process's rank and world size, which any layer may ask
    {"files", "train.cpu_head", "train.sampling"},
    {"train.patches"},
    {"config"},
    {"runs"},
    {"models"},
    {"data"},
    {"train", "inference"},
    {"evaluation"},
    {"hub", "planning", "export"},
    {"workflow"},
    {
        "studio"
    },  # the web app: beside cli (a person's entry point), below it so `pipeline studio` can start it
    {"cli"},
    {"__main__"},
]
# Our own private attributes read across modules (pydantic private attributes of our Spec classes).
OWN_PRIVATE = {"_name", "_path", "_folder"}


def _modules() -> dict[str, ast.Module]:
    return {
        ".".join(path.relative_to(PACKAGE).with_suffix("").parts): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def _unit(module: str) -> str:
    """The layer unit a module belongs to: train.patches, train.cpu_head, else its top-level package."""
    for unit in ("train.patches", "train.cpu_head", "train.sampling"):
        if module == unit or module.startswith(f"{unit}."):
            return unit
    return module.split(".")[0]


def _layer(module: str) -> int:
    unit = _unit(module)
    return next(i for i, units in enumerate(LAYERS) if unit in units)


def _imports(tree: ast.Module, modules: dict[str, ast.Module]) -> list[tuple[int, str]]:
    """(line, module) for every import of ours, lazy ones included; `from pipeline.train import sft` names
    train.sft, `from pipeline.data.splits import Splits` names data.splits."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            base = node.module.removeprefix("pipeline").lstrip(".")
            for alias in node.names:
                submodule = f"{base}.{alias.name}".lstrip(".")
                found.append((node.lineno, submodule if submodule in modules else base))
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name.removeprefix("pipeline."))
                for a in node.names
                if a.name.startswith("pipeline.")
            ]
    return [(line, name) for line, name in found if name not in ("", "__version__")]


def test_every_package_says_its_job_in_its_init() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.splitlines()) == 1, f"{init}: one docstring line saying the package's job"


def test_top_level_holds_only_entry_points_workflow_errors_files_and_ranks() -> None:
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top == {"__init__.py", "__main__.py", "workflow.py", "errors.py", "files.py", "ranks.py"}


def test_layers_point_down() -> None:
    modules = _modules()
    problems = []
    for module, tree in modules.items():
        for line, target in _imports(tree, modules):
            assert target in modules or f"{target}.__init__" in modules, (
                f"{module}:{line}: no pipeline.{target}"
            )
            if _unit(target) != _unit(module) and _layer(target) >= _layer(module):
                problems.append(f"pipeline/{module.replace('.', '/')}.py:{line} imports pipeline.{target}")
    assert not problems, "lower or peer layers imported:\n" + "\n".join(problems)


def test_private_library_names_only_in_train_patches() -> None:
    problems = []
    for module, tree in _modules().items():
        if _unit(module) == "train.patches":
            continue
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute):
                receiver = node.value.id if isinstance(node.value, ast.Name) else None
                if receiver not in ("self", "cls", "super"):
                    name = node.attr
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in (
                "getattr",
                "hasattr",
                "setattr",
            ):
                if (
                    len(node.args) > 1
                    and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str)
                ):
                    name = node.args[1].value
            elif (
                isinstance(node, ast.FunctionDef)
                and module.startswith("train.")
                and node.name.startswith("_get_")
            ):
                name = node.name  # overriding a library's private method
            if name and name.startswith("_") and not name.startswith("__") and name not in OWN_PRIVATE:
                problems.append(f"pipeline/{module.replace('.', '/')}.py:{node.lineno}: {name}")
    assert not problems, "private names outside train/patches/:\n" + "\n".join(problems)


def test_help_imports_no_heavy_library() -> None:
    """`pipeline --help` stays instant: the CLI modules import neither torch nor transformers at load time."""
    code = "import sys, pipeline.cli.app; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'trl', 'peft', 'datasets'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_module_past_400_lines(module: str) -> None:
    lines = len(
        (PACKAGE / Path(*module.split("."))).with_suffix(".py").read_text(encoding="utf-8").splitlines()
    )
    assert lines <= 400, f"pipeline/{module}.py has {lines} lines; split it"
