"""Chat templates shipped in recipes/templates/: model.chat_template names one of them or gives a file path."""

from __future__ import annotations

from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "recipes" / "templates"
SUFFIX = ".jinja"


def template_names() -> list[str]:
    """Names of the shipped templates (chatml, gemma, llama3, ...), sorted."""
    return sorted(p.stem for p in TEMPLATES_DIR.glob(f"*{SUFFIX}"))


def is_template_name(value: str) -> bool:
    """True when model.chat_template is a bare name ('chatml') rather than a path ('my.jinja', 'a/b')."""
    return not any(sep in value for sep in "/\\") and not Path(value).suffix


def names_hint() -> str:
    """The fix a template error names: the shipped names, or a path."""
    return f"set model.chat_template to one of {', '.join(template_names())} or to a .jinja file"


def template_path(value: str) -> Path:
    """The file of a template name or path; raises ValueError naming the shipped templates for an unknown name."""
    if not is_template_name(value):
        return Path(value)
    path = TEMPLATES_DIR / f"{value}{SUFFIX}"
    if not path.is_file():
        raise ValueError(f"unknown chat template '{value}'; {names_hint()}")
    return path


def shipped_name(text: str) -> str | None:
    """The name of the shipped template whose text this is (how a loaded tokenizer's template is named)."""
    for name in template_names():
        if (TEMPLATES_DIR / f"{name}{SUFFIX}").read_text(encoding="utf-8") == text:
            return name
    return None
