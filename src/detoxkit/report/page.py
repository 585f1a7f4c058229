"""One report page: its blocks (headings, notes, tables, figures), rendered as self-contained HTML (no scripts)
and as markdown, with the image files beside it."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path
from typing import Any

from .shapes import is_rate, rate_text, text


def _html_cell(v: Any) -> str:
    if is_rate(v):
        value, rest = rate_text(v)
        return f'<td class="num">{html.escape(value)}<span class="ci">{html.escape(rest)}</span></td>'
    numeric = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))  # "–" lines up with numbers
    body = re.sub(r"([.:])", r"\1<wbr>", html.escape(text(v)))  # long dotted paths break after a dot, not mid-word
    return f"<td{' class=num' if numeric else ''}>{body}</td>"


def _md_escape(s: str) -> str:
    # Markdown tables split on | and renderers pass HTML through: escape both, and keep every cell on one line.
    return html.escape(s, quote=False).replace("|", "\\|").replace("\n", " ")


CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232a; margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; min-height: 100vh; box-sizing: border-box; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid #e3e6ea; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 6px; } p.meta { color: #5c6670; margin: 0 0 16px; } .note { color: #5c6670; }
.scroll { overflow-x: auto; margin: 6px 0 12px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #e3e6ea; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; } tbody tr:nth-child(even) { background: #fafbfc; }
td { max-width: 420px; overflow-wrap: break-word; }
td:first-child { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; max-width: 340px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { display: block; color: #6b7580; font-size: 11px; white-space: normal; }
figure { margin: 10px 0 18px; } figure img { max-width: 100%; border: 1px solid #e3e6ea; }
figcaption { color: #5c6670; font-size: 12px; }
"""


class Page:
    """The blocks of one report (rendered as HTML and as markdown) and the image files written beside them."""

    def __init__(self, folder: Path):
        self.folder, self.blocks, self.n_tables, self.n_images = folder, [], 0, 0

    def heading(self, title: str, level: int = 2) -> None:
        self.blocks.append(("h", level, title))

    def note(self, words: str) -> None:
        self.blocks.append(("p", words))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        if rows:
            self.blocks.append(("table", header, rows))
            self.n_tables += 1

    def columns(self, named: dict[str, dict]) -> None:
        """A table with a row per metric and a column per named flat dict (entries, rounds or runs)."""
        keys = list(dict.fromkeys(k for flat in named.values() for k in flat))
        self.table(["metric", *named], [[k, *(flat.get(k) for flat in named.values())] for k in keys])

    def _file(self, name: str) -> Path:
        path = self.folder / f"{self.n_images + 1:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name).strip('-')[:80]}"
        self.n_images += 1
        return path

    def figure(self, fig, name: str, caption: str) -> None:
        import matplotlib.pyplot as plt

        path = self._file(name + ".png")
        fig.savefig(path, dpi=100)  # inside the temporary output folder: atomic with the rest
        plt.close(fig)
        self.blocks.append(("img", path.name, caption))

    def copy(self, src: Path, caption: str) -> None:
        path = self._file(src.name)
        shutil.copyfile(src, path)
        self.blocks.append(("img", path.name, caption))

    def html(self, title: str, meta: str) -> str:
        parts = [
            f"<!doctype html>\n<html lang=en><head><meta charset=utf-8>\n<title>{html.escape(title)}</title>\n"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>\n<style>{CSS}</style></head>\n"
            f"<body><main>\n<h1>{html.escape(title)}</h1>\n<p class=meta>{html.escape(meta)}</p>"
        ]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif kind == "p":
                parts.append(f"<p class=note>{html.escape(block[1])}</p>")
            elif kind == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
                body = "\n".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block[2])
                parts.append(
                    f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>"
                )
            else:
                src, cap = html.escape(block[1], quote=True), html.escape(block[2])
                parts.append(
                    f'<figure><img src="{src}" alt="{html.escape(block[2], quote=True)}"><figcaption>{cap}</figcaption></figure>'
                )
        return "\n".join(parts) + "\n</main></body></html>\n"

    def markdown(self, title: str, meta: str) -> str:
        parts = [f"# {_md_escape(title)}", "", _md_escape(meta), ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                parts += ["#" * block[1] + " " + _md_escape(block[2]), ""]
            elif kind == "p":
                parts += [_md_escape(block[1]), ""]
            elif kind == "table":
                parts.append("| " + " | ".join(_md_escape(h) for h in block[1]) + " |")
                parts.append("|" + "---|" * len(block[1]))
                parts += ["| " + " | ".join(_md_escape(text(c)) for c in row) + " |" for row in block[2]]
                parts.append("")
            else:
                parts += [f"![{_md_escape(block[2])}]({block[1]})", ""]
        return "\n".join(parts)
