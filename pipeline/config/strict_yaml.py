"""YAML as recipes need it: `1e-4` is a number (not a string), and a key given twice is an error naming both lines."""

from __future__ import annotations

import re
from typing import Any

import yaml

from pipeline.errors import RecipeError

# YAML 1.1 (PyYAML) reads `1e-4` and `2E5` as strings because its float pattern wants a dot; YAML 1.2 and every
# user read them as numbers. Same as PyYAML's float resolver, with the dot made optional.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)
    |[-+]?(?:[0-9][0-9_]*)\.[0-9_]*
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class DuplicateKey(yaml.MarkedYAMLError):
    """A mapping names the same key twice."""


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-style exponent floats and duplicate-key detection."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise DuplicateKey(
                    problem=f"key '{key}' appears twice (first on line {seen[key] + 1})",
                    problem_mark=key_node.start_mark,
                )
            if isinstance(key, (str, int, float, bool)):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RecipeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """Parse YAML text (raises yaml.YAMLError, DuplicateKey included)."""
    return yaml.load(text, Loader=_RecipeLoader)  # a SafeLoader subclass: no arbitrary objects


def load_yaml_file(path: Any) -> Any:
    """A YAML file's content; syntax errors and duplicate keys become one RecipeError naming file:line."""
    try:
        return parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or exc
        if isinstance(exc, DuplicateKey):
            raise RecipeError(f"{where}: {problem}; keep one of them.") from None
        raise RecipeError(f"{where}: invalid YAML ({problem}); fix the syntax there.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read the file ({exc}).") from None
