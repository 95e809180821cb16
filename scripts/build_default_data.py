"""Build the default fine-tuning data set (pydoc-qa) from the standard library's own docstrings.

Turns each public function, class and public method (with a usable docstring) of ~100 widely used stdlib
modules into a chat Q&A record and writes ``recipes/data/pydoc-qa/`` (train.jsonl, eval.jsonl, README.md).
Deterministic for a given Python version and platform (sorted walk, ``random.Random(1234)``).
Run from anywhere: ``python scripts/build_default_data.py``
"""

from __future__ import annotations

import importlib
import inspect
import json
import random
import re
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_MODULE_LIST = """
abc argparse array asyncio base64 binascii bisect builtins bz2 calendar cmath codecs collections
concurrent.futures configparser contextlib copy csv dataclasses datetime decimal difflib dis doctest
email.message email.utils enum filecmp fileinput fnmatch fractions functools getopt getpass gettext glob
graphlib gzip hashlib heapq html http.client http.server inspect io ipaddress itertools json locale logging
lzma math mimetypes multiprocessing numbers operator os os.path pathlib pickle platform plistlib pprint
queue random re reprlib sched secrets selectors shlex shutil signal socket sqlite3 ssl stat statistics
string struct subprocess sys tarfile tempfile textwrap threading time timeit tokenize traceback types
typing unicodedata unittest unittest.mock urllib.parse urllib.request uuid warnings weakref webbrowser
xml.etree.ElementTree zipfile zlib
"""
MODULES = sorted(_MODULE_LIST.split())
# Private homes of objects documented under a public module (os.listdir lives in posix, open in io, ...).
HOMES = {"os": {"posix", "nt"}, "os.path": {"genericpath"}, "threading": {"_thread"}, "builtins": {"io"}}
OUT_DIR = Path(__file__).resolve().parent.parent / "recipes" / "data" / "pydoc-qa"
SEED, EVAL_FRACTION, EVAL_CAP, FOLLOW_UP_RATE = 1234, 0.05, 200, 0.20
MAX_SIG, MAX_ANSWER, MIN_DOC = 100, 350, 20
SIG_LINE = re.compile(r"^(async )?[\w.]+\(.*\)(\s*-+>.*)?$|^\w+ = [\w.]+\(|^\w+=\S+(, \w+=\S+)+$", re.S)
SIG_PREFIX = re.compile(r"^[\w.]+\([^()]*\)(\s+-+\s+|\s+(?=[A-Z]))")  # "log(x, [base]) Return ..."
COMMON = ["Explain `{q}` in Python.", "How do I use `{q}`?"]
QUESTIONS = {
    "function": [*COMMON, "What does `{q}` do?", "What is `{q}` used for?", "Describe the function `{q}`."],
    "class": [*COMMON, "What is `{q}` for?", "What does the `{q}` class represent?", "Describe `{q}`."],
    "method": [*COMMON, "What does the `{q}` method do?", "What is `{q}` used for?", "Describe `{q}`."],
}


@dataclass(frozen=True)
class Entry:
    """One documented stdlib object: its qualified name, kind, module, owning class, signature, text."""

    qualname: str
    kind: str  # "function", "class", "method", "classmethod" or "staticmethod"
    module: str
    owner: str  # class name for methods, "" otherwise
    signature: str  # "" when inspect.signature fails
    summary: str
    ident: int  # id() of the documented object: aliases (io.open and open) share it


def signature_of(obj: object, qualname: str) -> str:
    """Return ``qualname(params)`` truncated to about MAX_SIG characters, or "" if unavailable."""
    try:
        sig = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    sig = re.sub(r" at 0x[0-9a-fA-F]+", "", sig)  # addresses, paths: not reproducible
    sig = sig.replace(repr(sys.executable), "sys.executable")
    text = qualname + sig
    if len(text) > MAX_SIG:
        cut = text.rfind(", ", 0, MAX_SIG - 5)
        text = text[:cut] + ", ...)" if cut > len(qualname) else qualname + "(...)"
    return text


def summarise(doc: str | None) -> str:
    """Return the docstring's first prose paragraph, whitespace-normalised and cut at a sentence end."""
    raw = [SIG_PREFIX.sub("", " ".join(p.split())) for p in re.split(r"\n\s*\n", inspect.cleandoc(doc or ""))]
    paragraphs = [p for p in raw if p and not SIG_LINE.match(p) and not p.startswith(">>>")]
    if not paragraphs or len(paragraphs[0]) < MIN_DOC:  # too short to say anything
        return ""
    text, out = paragraphs[0], ""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if len(out) + len(sentence) + 1 > MAX_ANSWER:
            break
        out = f"{out} {sentence}".strip()
    if not out:  # a single over-long sentence: cut at a word boundary
        out = text[: MAX_ANSWER - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."
    return out[:-1] + "." if out.endswith(":") else out


def defined_here(obj: object, module: object, name: str) -> bool:
    """True if ``obj`` was defined by ``module`` (its C accelerator or, for a package, a submodule)."""
    real = getattr(module, "__name__", name)
    home = getattr(obj, "__module__", None)
    if home in {name, real, "_" + real.rsplit(".", 1)[-1], *HOMES.get(name, ())}:
        return True
    return hasattr(module, "__path__") and isinstance(home, str) and home.startswith(real + ".")


def method_entries(cls: type, modname: str, clsqual: str) -> list[Entry]:
    """Entries for the public methods defined directly on ``cls`` (inherited ones are skipped)."""
    entries = []
    for name, raw in sorted(vars(cls).items()):
        if name.startswith("_") or not inspect.isroutine(raw):  # includes (C) class/static methods
            continue
        obj = getattr(cls, name, raw)
        kind = next((k for k in ("classmethod", "staticmethod") if k in type(raw).__name__), "method")
        qual, owner = f"{clsqual}.{name}", clsqual.rsplit(".", 1)[-1]
        if summary := summarise(getattr(obj, "__doc__", None)):
            entries.append(Entry(qual, kind, modname, owner, signature_of(obj, qual), summary, id(raw)))
    return entries


def module_entries(modname: str) -> list[Entry]:
    """Entries for the public functions, classes and class methods defined in one module."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(modname)
    prefix = "" if modname == "builtins" else modname + "."  # builtins are known as plain `len`, `str.split`
    entries = []
    for name, obj in sorted(vars(module).items()):
        is_class = inspect.isclass(obj)
        public = not name.startswith("_") and (is_class or inspect.isroutine(obj))
        if not public or not defined_here(obj, module, modname):
            continue
        qual = prefix + name
        doc = obj.__dict__.get("__doc__") if is_class else obj.__doc__
        if summary := summarise(doc if isinstance(doc, str) else None):
            kind = "class" if is_class else "function"
            entries.append(Entry(qual, kind, modname, "", signature_of(obj, qual), summary, id(obj)))
        if is_class:
            entries.extend(method_entries(obj, modname, qual))
    return entries


def first_answer(e: Entry) -> str:
    """The assistant's answer to the first question: signature (or name) followed by the docstring summary."""
    return f"`{e.signature or e.qualname}`: {e.summary}"


def import_answer(e: Entry) -> str:
    """Where ``e`` lives and how to import and call it."""
    short = e.qualname.rsplit(".", 1)[-1]
    if e.kind in ("classmethod", "staticmethod"):
        call = f"call it on the class: `{e.owner}.{short}(...)`"
    elif e.owner:
        call = f"call it on a `{e.owner}` instance: `obj.{short}(...)`"
    else:
        call = f"{'create one with' if e.kind == 'class' else 'call'} `{e.qualname}(...)`"
    if e.module == "builtins":
        where = f"a method of the built-in `{e.owner}` type" if e.owner else "a built-in"
        return f"It is {where}, always available without an import: {call}."
    if e.owner:
        return f"It is a method of `{e.module}.{e.owner}`: `from {e.module} import {e.owner}`, then {call}."
    return f"It is in the `{e.module}` module: `import {e.module}`, then {call}."


def follow_up(e: Entry, rng: random.Random) -> tuple[str, str]:
    """A deterministic, factually correct follow-up question and answer about the same object."""
    choice = rng.choice(["module", "kind"] + (["signature"] if e.signature else []))
    if choice == "signature":
        return "Show me the call signature again.", f"`{e.signature}`"
    if choice == "kind":
        what = f"a {e.kind}" + (f" of the `{e.owner}` class" if e.owner else "")
        where = "a built-in" if e.module == "builtins" else f"in the `{e.module}` module"
        return "Is it a function, a class or a method?", f"`{e.qualname}` is {what}, {where}."
    return "Which module is it in, and how do I import it?", import_answer(e)


def build_records(entries: list[Entry], rng: random.Random) -> list[dict]:
    """Turn entries into chat records, one per object, about FOLLOW_UP_RATE of them two-turn."""
    records = []
    for e in entries:
        kind = e.kind if e.kind in QUESTIONS else "method"
        messages = [
            {"role": "user", "content": rng.choice(QUESTIONS[kind]).format(q=e.qualname)},
            {"role": "assistant", "content": first_answer(e)},
        ]
        if rng.random() < FOLLOW_UP_RATE:
            question, answer = follow_up(e, rng)
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        records.append({"messages": messages, "source": e.qualname})
    return records


def collect() -> list[Entry]:
    """All entries, sorted by name; an alias or a repeated answer is dropped (the shortest name is kept)."""
    entries, seen = [], set()
    found = [e for m in MODULES for e in module_entries(m)]
    for e in sorted(found, key=lambda e: (e.qualname.count("."), e.qualname)):
        if not {e.qualname, e.ident, first_answer(e)} & seen:
            seen.update((e.qualname, e.ident, first_answer(e)))
            entries.append(e)
    return sorted(entries, key=lambda e: e.qualname)


def write_card(train: list[dict], evals: list[dict]) -> None:
    """Write the data card README.md with source, licence, method, counts and format."""
    two_turn = sum(len(r["messages"]) > 2 for r in train + evals)
    version = ".".join(map(str, sys.version_info[:3]))
    card = f"""# pydoc-qa: Python standard library docstring Q&A

Default fine-tuning data: short chats about the Python standard library, built from the docstrings
of {len(MODULES)} widely used stdlib modules (CPython {version}, {sys.platform}, read with `inspect`).

- **Licence:** the docstring text comes from CPython: Python Software Foundation License
  (https://docs.python.org/3/license.html).
- **Made by:** `python scripts/build_default_data.py` (stdlib only; sorted walk, `random.Random({SEED})`).
  Docstrings vary by Python version and platform: rebuild with {version} on {sys.platform} to reproduce.
- **Records:** {len(train)} train (`train.jsonl`), {len(evals)} eval (`eval.jsonl`); {two_turn} are two-turn.
  Split by object name (the `source` field): no name is in both files.

## Format

One JSON object per line: `{{"messages": [{{"role": "user", "content": ...}}, {{"role": "assistant",
"content": ...}}, ...], "source": "json.dumps"}}`, no system turn (the recipe adds one). An answer is the
object's signature (if `inspect.signature` works, cut to ~{MAX_SIG} chars) and its docstring's first
paragraph, cut at a sentence end to at most ~{MAX_ANSWER} chars. Follow-ups (module and import, kind,
signature) are built from the same facts.

Modules: {", ".join(f"`{m}`" for m in MODULES)}.
"""
    (OUT_DIR / "README.md").write_text(card, encoding="utf-8")


def main() -> None:
    """Build, split by object name, write the files and print counts."""
    rng = random.Random(SEED)
    entries = collect()
    names = sorted({e.qualname for e in entries})
    rng.shuffle(names)
    held_out = set(names[: min(EVAL_CAP, round(len(names) * EVAL_FRACTION))])
    records = build_records(entries, rng)
    train = [r for r in records if r["source"] not in held_out]
    evals = [r for r in records if r["source"] in held_out]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("eval", evals)):
        lines = (json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (OUT_DIR / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")
    write_card(train, evals)
    kinds = dict(sorted(Counter(e.kind for e in entries).items()))
    print(f"Python {sys.version.split()[0]}: {len(entries)} objects from {len(MODULES)} modules {kinds}")
    two_turn = sum(len(r["messages"]) > 2 for r in records)
    print(f"train={len(train)} eval={len(evals)} two_turn={two_turn} -> {OUT_DIR}")


if __name__ == "__main__":
    main()
