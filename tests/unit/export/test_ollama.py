"""Ollama Modelfiles: each supported chat template's Go form renders conversations exactly as its Jinja form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import build_tiny_tokenizer

from pipeline.errors import AssetError
from pipeline.export.go_template import ollama_values, render
from pipeline.export.ollama import detect_format, go_text, jinja_text, modelfile

TEMPLATES = Path(__file__).resolve().parents[3] / "recipes" / "templates"
# SmolLM2-135M-Instruct's own template: ChatML that adds a default system turn when a conversation has none.
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Not the detection probes: longer histories, unicode, inner newlines, a system turn with several lines.
CONVERSATIONS = [
    [
        {"role": "system", "content": "You explain the Python standard library."},
        {"role": "user", "content": "json?"},
    ],
    [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Explain itertools.chain."},
        {"role": "assistant", "content": "It links iterables:\nchain('ab', 'cd') -> a b c d."},
        {"role": "user", "content": "Thanks — and café ☕?"},
    ],
    [
        {"role": "system", "content": "Line one.\nLine two."},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ],
    [{"role": "user", "content": "Only a question, with a generation prompt."}],
]


def _tokenizer(template: str) -> Any:
    return build_tiny_tokenizer(template)


@pytest.mark.parametrize(
    ("name", "family"),
    [("chatml", "chatml"), ("qwen", "chatml"), ("llama3", "llama3"), ("gemma", "gemma"), ("phi3", "phi3")],
)
def test_go_template_renders_like_the_jinja_template(name: str, family: str) -> None:
    tokenizer = _tokenizer((TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8"))
    fmt = detect_format(tokenizer, adds_bos=False, where=name)
    assert fmt.family.name == family and fmt.default_system is None
    for messages in CONVERSATIONS:
        assert go_text(fmt, messages) == jinja_text(tokenizer, messages)


def test_smollm2_default_system_prompt_becomes_the_modelfile_system() -> None:
    tokenizer = _tokenizer(SMOLLM2)
    fmt = detect_format(tokenizer, adds_bos=False, where="smollm2")
    assert fmt.family.name == "chatml"
    assert fmt.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    for messages in CONVERSATIONS:
        assert go_text(fmt, messages) == jinja_text(tokenizer, messages)
    text = modelfile("smol-f16.gguf", fmt, None, {"temperature": 0.7})
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text


def test_recipe_system_prompt_equals_what_training_rendered() -> None:
    """With data.system_prompt as SYSTEM, Ollama's prompt is the Jinja text of the conversation training saw."""
    tokenizer = _tokenizer(SMOLLM2)
    fmt = detect_format(tokenizer, adds_bos=False, where="smollm2")
    system = "You are a concise assistant that explains the Python standard library."
    user = [{"role": "user", "content": "What does json.dumps do?"}]
    trained = jinja_text(tokenizer, [{"role": "system", "content": system}, *user])
    assert go_text(fmt, user, system=system) == trained


def test_bos_added_by_llama_cpp_is_not_repeated_in_the_template() -> None:
    tokenizer = _tokenizer((TEMPLATES / "llama3.jinja").read_text(encoding="utf-8"))
    added = detect_format(tokenizer, adds_bos=True, where="llama3")
    assert added.bos_prefix == tokenizer.bos_token and not added.template.startswith(tokenizer.bos_token)
    literal = detect_format(tokenizer, adds_bos=False, where="llama3")
    assert literal.bos_prefix == "" and literal.template.startswith(tokenizer.bos_token)
    for messages in CONVERSATIONS:
        assert go_text(added, messages) == go_text(literal, messages) == jinja_text(tokenizer, messages)


@pytest.mark.parametrize("name", ["mistral"])
def test_unknown_template_is_one_line_naming_the_supported(name: str) -> None:
    tokenizer = _tokenizer((TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8"))
    with pytest.raises(
        AssetError, match="none Ollama export knows; supported: chatml, llama3, gemma, phi3"
    ) as error:
        detect_format(tokenizer, adds_bos=False, where=name)
    assert "\n" not in str(error.value)


def test_modelfile_names_the_file_template_system_stops_and_parameters() -> None:
    fmt = detect_format(_tokenizer((TEMPLATES / "chatml.jinja").read_text(encoding="utf-8")), False, "chatml")
    text = modelfile("run-q8_0.gguf", fmt, "Be brief.", {"temperature": 0.7, "num_ctx": 2048})
    lines = text.splitlines()
    assert lines[0] == "FROM ./run-q8_0.gguf" and lines[1].startswith('TEMPLATE """{{- if .System }}')
    assert 'SYSTEM """Be brief."""' in lines
    assert lines[-4:] == [
        'PARAMETER stop "<|im_start|>"',
        'PARAMETER stop "<|im_end|>"',
        "PARAMETER temperature 0.7",
        "PARAMETER num_ctx 2048",
    ]
    with pytest.raises(AssetError, match="three double quotes"):
        modelfile("x.gguf", fmt, 'say """hi"""', {})


def test_renderer_matches_known_go_template_output() -> None:
    """Known results of Go's text/template for the constructs we emit (trim markers, else if, scopes)."""
    source = (
        "{{- range $i, $_ := .Messages }}\n"
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
        '{{- if eq .Role "user" }}U:{{ .Content }}\n'
        '{{ else if eq .Role "assistant" }}A:{{ .Content }}\n'
        "{{ else }}?{{ end }}\n"
        "{{- if $last }}[{{ $i }} last]{{ end }}\n"
        "{{- end }}{{ if not .System }} no system{{ end }}"
    )
    values = {"System": "", "Messages": [{"Role": "user", "Content": "a"}, {"Role": "tool", "Content": "b"}]}
    assert render(source, values) == "U:a\n?[1 last] no system"
    assert render("x {{- .System -}} \n y", {"System": "S"}) == "xSy"
    assert render('{{ if and .A (ne .B "b") }}yes{{ else }}no{{ end }}', {"A": "1", "B": "c"}) == "yes"
    assert render('{{ if or .A (eq .B "b" "c") }}yes{{ end }}', {"A": "", "B": "c"}) == "yes"
    with pytest.raises(ValueError, match="missing"):
        render("{{ if .A }}open", {"A": 1})


def test_ollama_values_prepend_system_and_join_turns_of_one_role() -> None:
    values = ollama_values(
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], default_system="S"
    )
    assert values["System"] == "S"
    assert values["Messages"] == [{"Role": "system", "Content": "S"}, {"Role": "user", "Content": "a\n\nb"}]
    own = ollama_values([{"role": "system", "content": "mine"}, {"role": "user", "content": "q"}], "S")
    assert own["System"] == "mine" and len(own["Messages"]) == 2
