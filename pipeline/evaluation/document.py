"""A report as plain blocks (paragraphs, tables, images, code), rendered to Markdown or to HTML."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field


@dataclass
class Table:
    """A table of already formatted cells."""

    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    """A PNG figure: a file next to report.md, inlined as base64 in report.html."""

    name: str
    png: bytes
    alt: str


@dataclass
class Code:
    """A preformatted block (e.g. the recipe as YAML)."""

    text: str
    language: str = ""


Block = str | Table | Image | Code


@dataclass
class Section:
    """A titled section of the report."""

    title: str
    blocks: list[Block] = field(default_factory=list)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def to_markdown(title: str, sections: list[Section], image_dir: str = "plots") -> str:
    """GitHub-flavoured Markdown; images link to `image_dir/<name>`."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                lines.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
                lines.append("|" + "---|" * len(block.header))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            elif isinstance(block, Image):
                lines.append(f"![{block.alt}]({image_dir}/{block.name})")
            elif isinstance(block, Code):
                lines += [f"```{block.language}", block.text.rstrip("\n"), "```"]
            else:
                lines.append(block)
            lines.append("")
    return "\n".join(lines)


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #1f77b4;padding-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.3em .6em;
vertical-align:top;text-align:left}th{background:#f2f4f7}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}pre{background:#f6f8fa;padding:.8em;overflow-x:auto;
font-size:.85em}.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
"""


def _html_cell(text: str) -> str:
    escaped = html.escape(text).replace("\n", "<br>")
    if text.startswith(("PASS", "FAIL")):
        return f'<span class="{text[:4].lower()}">{escaped}</span>'
    return escaped


def to_html(title: str, sections: list[Section]) -> str:
    """One self-contained HTML page: inline CSS, PNGs as base64 data URIs, no external requests."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
                body = "".join(
                    "<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in block.rows
                )
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(block, Image):
                data = base64.b64encode(block.png).decode("ascii")
                parts.append(f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">')
            elif isinstance(block, Code):
                parts.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
            else:
                parts.append(f"<p>{html.escape(block)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
