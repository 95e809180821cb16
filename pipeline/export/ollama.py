"""An Ollama Modelfile for an exported GGUF: the run's chat template in Go-template form, stops, SYSTEM.

The family (ChatML, Llama 3, Gemma) is found by rendering probe conversations through the run's Jinja template
and through each family's Go template (pipeline.export.go_template): the one that gives the same text wins."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import AssetError
from pipeline.export.go_template import ollama_values, render

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CHATML = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ .Content }}<|im_end|>
{{ end }}
{{- if and $last (ne .Role "assistant") }}<|im_start|>assistant
{{ end }}
{{- end }}"""

LLAMA3 = """{{- if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>
{{- end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- end }}
{{- if and $last (ne .Role "assistant") }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}"""

# Gemma has no system turn: the system text and a blank line open the first user turn.
GEMMA = """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<start_of_turn>user
{{ if and $.System (eq $i 1) }}{{ $.System }}

{{ end }}{{ .Content }}<end_of_turn>
{{ else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}<end_of_turn>
{{ end }}
{{- if and $last (ne .Role "assistant") }}<start_of_turn>model
{{ end }}
{{- end }}"""

# Phi-3 keeps system turns in place among the messages, each role in its own <|role|> block.
PHI3 = """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "system" }}<|system|>
{{ .Content }}<|end|>
{{ else if eq .Role "user" }}<|user|>
{{ .Content }}<|end|>
{{ else if eq .Role "assistant" }}<|assistant|>
{{ .Content }}<|end|>
{{ end }}
{{- if and $last (ne .Role "assistant") }}<|assistant|>
{{ end }}
{{- end }}"""


@dataclass(frozen=True)
class Family:
    """A chat format Ollama can run: its Go template, stop strings and how a default system turn looks."""

    name: str
    template: str
    stops: tuple[str, ...]
    system_block: str | None  # regex whose group 1 is a system prompt the Jinja template adds by itself


FAMILIES = (
    Family("chatml", CHATML, ("<|im_start|>", "<|im_end|>"), r"<\|im_start\|>system\n(.*?)<\|im_end\|>\n"),
    Family(
        "llama3",
        LLAMA3,
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        r"<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>",
    ),
    Family("gemma", GEMMA, ("<start_of_turn>", "<end_of_turn>"), None),
    Family("phi3", PHI3, ("<|end|>", "<|user|>", "<|assistant|>"), None),
)
PROBE_SYSTEM = "Answer briefly."
# Conversations Ollama's chat endpoint sends: each ends with a user turn and asks for the answer.
PROBES = (
    [{"role": "user", "content": "What does json.dumps do?"}],
    [{"role": "system", "content": PROBE_SYSTEM}, {"role": "user", "content": "Hello, how are you?"}],
    [
        {"role": "user", "content": "Explain os.path.join."},
        {"role": "assistant", "content": "It joins path segments."},
        {"role": "user", "content": "Which module?"},
    ],
    [
        {"role": "system", "content": PROBE_SYSTEM},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Name a Python module."},
    ],
)


@dataclass
class ChatFormat:
    """The family that matched, and the default system prompt the run's template adds (if any)."""

    family: Family
    default_system: str | None
    bos_prefix: (
        str  # a BOS the Jinja text opens with and llama.cpp adds itself (tokenizer.ggml.add_bos_token)
    )
    template: str  # the family's Go template, opened by the BOS text when llama.cpp does not add it


def jinja_text(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """The run's chat template applied to messages with the generation prompt."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def go_text(fmt: ChatFormat, messages: list[dict[str, str]], system: str | None = None) -> str:
    """What Ollama's prompt for messages would be (the BOS llama.cpp adds included), SYSTEM defaulting to fmt's."""
    values = ollama_values(messages, system if system is not None else fmt.default_system)
    return fmt.bos_prefix + render(fmt.template, values)


def _matches(tokenizer: PreTrainedTokenizerBase, fmt: ChatFormat) -> bool:
    try:
        return all(jinja_text(tokenizer, list(m)) == go_text(fmt, list(m)) for m in PROBES)
    except Exception:  # a template that rejects a probe (roles, raise_exception) is not this family
        return False


def detect_format(tokenizer: PreTrainedTokenizerBase, adds_bos: bool, where: str) -> ChatFormat:
    """The family whose Go template renders the probes exactly as the run's Jinja template does."""
    bos = tokenizer.bos_token or ""
    try:
        plain = jinja_text(tokenizer, list(PROBES[0]))
    except Exception as exc:
        raise AssetError(f"{where}: the chat template fails on a plain user turn ({exc}).") from None
    prefix = bos if adds_bos else ""  # llama.cpp opens every prompt with it
    # A BOS the Jinja text opens with goes into the Go template when llama.cpp does not add it; ChatML's first
    # token can also be the BOS (SmolLM2), so the plain reading is tried first.
    literals = [""] + ([bos] if bos and not adds_bos and plain.startswith(bos) else [])
    for family in FAMILIES:
        for literal in literals:
            text = plain.removeprefix(prefix or literal)
            found = re.match(family.system_block, text, re.DOTALL) if family.system_block else None
            for default in ([found.group(1)] if found else []) + [None]:
                fmt = ChatFormat(family, default, prefix, literal + family.template)
                if _matches(tokenizer, fmt):
                    return fmt
    raise AssetError(
        f"{where}: the chat template is none Ollama export knows; supported: "
        f"{', '.join(f.name for f in FAMILIES)} (ChatML covers SmolLM2 and Qwen)."
    )


def _quoted(text: str) -> str:
    if '"""' in text:
        raise AssetError(f"a Modelfile value cannot hold three double quotes in a row: {text[:60]!r}")
    return f'"""{text}"""'


def modelfile(
    gguf_name: str,
    fmt: ChatFormat,
    system: str | None,
    parameters: dict[str, Any],
    adapter: str | None = None,
) -> str:
    """The Modelfile text: FROM, ADAPTER (a LoRA GGUF on that base), TEMPLATE, SYSTEM (recipe's, else the
    template's default), stops, PARAMETERs."""
    lines = [
        f"FROM ./{gguf_name}",
        *([f"ADAPTER ./{adapter}"] if adapter else []),
        f"TEMPLATE {_quoted(fmt.template)}",
    ]
    system = system if system is not None else fmt.default_system
    if system:
        lines.append(f"SYSTEM {_quoted(system)}")
    lines += [f'PARAMETER stop "{stop}"' for stop in fmt.family.stops]
    lines += [f"PARAMETER {key} {value}" for key, value in parameters.items()]
    return "\n".join(lines) + "\n"
