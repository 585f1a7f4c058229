"""`detoxkit report RUN ...`: an HTML and a markdown page of one run, or a comparison of several, with plots.

Nothing here knows a recipe by name. Metrics are read by shape: a rate ``{"value", "n", "ci95"}`` (from
:mod:`detoxkit.eval.stats`) is one cell; a mapping whose values are all mappings (methods, sources, rounds by
name) is a table with a column per entry; a list of mappings with a ``step``/``round``/``epoch`` field is a
curve, as are the JSONL logs beside metrics.json.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from . import __version__
from .config import arg, build_parser, parse_config
from .errors import DataError, DetoxkitError

PROG = "detoxkit report"
X_KEYS = ("step", "round", "epoch")  # the x axis of a curve, in order of preference
ID_KEYS = {"step", "round", "epoch", "index", "slot", "seed", "n"}  # numbers that name a row rather than measure it
PRIORITY = re.compile(r"loss|pass|acc|rate|score|fool|auc|f1|J$|STA|SIM|FL", re.I)  # plotted first when space runs out
MAX_PANELS = 6
MAX_SERIES_ROWS = 25
# Toxicity-vs-utility scatter: a safety and a utility metric under the same parent, first match wins.
SAFETY = ("harmless_rate", "toxicity_probability", "expected_max_toxicity", "STA")
UTILITY = ("mc_accuracy", "perplexity.value", "SIM", "FL", "accuracy")


@dataclass
class ReportConfig:
    """Write report.html and report.md for one run, or a comparison of several runs, with plots.

    A RUN is a recipe's output_dir, which must hold metrics.json (config.yaml, JSONL logs and the PNG plots the
    recipe wrote are used when present), or a metrics JSON file such as benchmarks/results/acd.json (PNGs named
    after it, like sro_curve.png beside sro.json, are included). One RUN gives a page of its metrics, tables and
    curves; several give one comparison table with a column per run, curves overlaid, and config differences.
    Rates print as "value [95% interval] (n=...)". The output folder is written whole or not at all.

    Examples:
      detoxkit report runs/sro                                  -> runs/sro/report/report.html, report.md
      detoxkit report runs/sro runs/sft --output runs/compare   -> a comparison
      detoxkit report benchmarks/results/acd.json --output acd-report
    """

    output: Optional[str] = arg(None, "output folder (default: RUN/report for one run folder, ./report otherwise)")
    title: Optional[str] = arg(None, "page title (default: the run's name, or 'comparison of N runs')")


@dataclass
class Run:
    name: str
    path: Path
    metrics: dict
    config: dict = field(default_factory=dict)
    logs: dict[str, list[dict]] = field(default_factory=dict)  # JSONL file name -> rows
    images: list[Path] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ reading runs


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON: {e.msg} (column {e.colno})", e.lineno) from None
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text (is this a metrics JSON file?)") from None
    if not isinstance(data, dict):
        raise DataError(path, "metrics must be a JSON object of name: value")
    return data


def _read_config(folder: Path) -> dict:
    import yaml

    for name in ("config.yaml", "config.json"):
        path = folder / name
        if path.is_file():
            try:
                config = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML reads JSON too
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                raise DataError(path, f"malformed config: {getattr(e, 'problem', e)}", mark and mark.line + 1) from None
            return config if isinstance(config, dict) else {}
    return {}


def load_run(path: str | Path) -> Run:
    """Read a run folder (metrics.json, config, JSONL logs, PNGs) or a metrics JSON file; errors name the path."""
    from .runs import read_jsonl

    path = Path(path)
    if not path.exists():
        raise DetoxkitError(f"{path}: no such run folder or metrics file")
    if path.is_file():
        images = sorted({*path.parent.glob(f"{path.stem}.png"), *path.parent.glob(f"{path.stem}_*.png")})
        return Run(path.stem, path, _read_json(path), images=images)
    if not (path / "metrics.json").is_file():
        raise DetoxkitError(f"{path}: no metrics.json in this folder (not a finished run? an `adversarial run` "
                            "folder gets one from `detoxkit adversarial eval`)")
    logs = {p.name: rows for p in sorted(path.glob("*.jsonl")) if (rows := read_jsonl(p))}
    return Run(path.name, path, _read_json(path / "metrics.json"), _read_config(path), logs, sorted(path.glob("*.png")))


def load_runs(paths: list[str]) -> list[Run]:
    runs = [load_run(p) for p in paths]
    # Columns are keyed by name: two runs named alike get their parent folder, and the same path twice a number.
    names = [r.name for r in runs]
    for r in runs:
        if names.count(r.name) > 1:
            r.name = f"{r.path.parent.name}/{r.name}"
    names = [r.name for r in runs]
    for i, r in enumerate(runs):
        if names.count(r.name) > 1:
            r.name += f" #{i + 1}"
    return runs


# ------------------------------------------------------------------------------------------------ metric shapes


def is_rate(v: Any) -> bool:
    """A {"value", "n", "ci95": [low, high]} dict from detoxkit.eval.stats."""
    return isinstance(v, dict) and "value" in v and isinstance(v.get("ci95"), list) and len(v["ci95"]) == 2


def _is_series(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(r, dict) for r in v)


def _is_entry_table(v: Any) -> bool:
    return isinstance(v, dict) and len(v) >= 2 and all(isinstance(e, dict) and not is_rate(e) for e in v.values())


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested metrics -> {"a.b.c": leaf}. A rate stays one leaf; lists of dicts are left out (they are curves)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not is_rate(v):
            out.update(flatten(v, key + "."))
        elif not _is_series(v):
            out[key] = v
    return out


def sections(metrics: dict) -> tuple[dict[str, Any], list[tuple[str, dict[str, dict]]]]:
    """Split metrics into plain leaves and entry tables ({path: {entry: flat metrics}})."""
    leaves: dict[str, Any] = {}
    tables: list[tuple[str, dict[str, dict]]] = []

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if _is_entry_table(v):
                tables.append((key, {str(e): flatten(sub) for e, sub in v.items()}))
            elif isinstance(v, dict) and not is_rate(v):
                walk(v, key + ".")
            elif not _is_series(v):
                leaves[key] = v

    walk(metrics, "")
    return leaves, tables


def series(d: dict, prefix: str = ""):
    """Every list of dicts in the metrics, as (path, rows)."""
    for k, v in d.items():
        key = f"{prefix}{k}"
        if _is_series(v):
            yield key, v
        elif isinstance(v, dict):
            yield from series(v, key + ".")


def _number(v: Any) -> float | None:
    """A plottable value: numbers, bools as 0/1, the value of a rate; None for anything else or non-finite."""
    if is_rate(v):
        v = v["value"]
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def curves(rows: list[dict]) -> tuple[str, dict[str, list[tuple]]] | None:
    """(x key, {field: [(x, y, low, high)]}) from rows with a numeric step/round/epoch, or None.

    Rows sharing an x (one per generated example in a training log) are averaged, their intervals dropped;
    fields that never change are left out, and the most telling MAX_PANELS are kept."""
    x_key = next((k for k in X_KEYS if sum(_number(r.get(k)) is not None for r in rows) >= 2), None)
    if x_key is None:
        return None
    grouped: dict[str, dict[float, list]] = {}
    for row in rows:
        x = _number(row.get(x_key))
        if x is None:
            continue
        for key, v in flatten(row).items():
            if key.rsplit(".", 1)[-1] in ID_KEYS:
                continue
            if v in ("pass", "fail"):  # SRO's follower verdict: its mean is the pass rate
                key, v = f"{key} = pass", v == "pass"
            if (y := _number(v)) is not None:
                ci = v["ci95"] if is_rate(v) else (None, None)
                grouped.setdefault(key, {}).setdefault(x, []).append((y, *ci))
    out = {}
    for key, by_x in grouped.items():
        points = [(x, *ys[0]) if len(ys) == 1 else (x, sum(y[0] for y in ys) / len(ys), None, None)
                  for x, ys in sorted(by_x.items())]
        if len(points) >= 2 and len({p[1] for p in points}) > 1:
            out[key] = points
    keep = sorted(out, key=lambda k: not PRIORITY.search(k))[:MAX_PANELS]
    return (x_key, {k: out[k] for k in keep}) if out else None


def scatter_points(named: list[tuple[str, dict]]) -> tuple[str, str, list[tuple]] | None:
    """Toxicity vs utility: (safety key, utility key, [(label, safety, utility)]) for the first pair of metrics that
    appear under the same parent in at least two of the named flat metrics; None when no pair does."""
    for s in SAFETY:
        for u in UTILITY:
            points = []
            for label, flat in named:
                for key, v in flat.items():
                    if key == s or key.endswith("." + s):
                        parent = key[: -len(s)]
                        x, y = _number(v), _number(flat.get(parent + u))
                        if x is not None and y is not None:
                            points.append((f"{label}: {parent.rstrip('.')}" if parent else label, x, y))
            if len(points) >= 2:
                return s, u, points
    return None


# ------------------------------------------------------------------------------------------------ formatting


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def rate_text(r: dict) -> tuple[str, str]:
    """("0.583", "[0.42, 0.73] (n=36)"). Values in [0, 1] get 3 decimals and a 2-decimal interval, as the recipes'
    own tables print them; other means (perplexity, BLEU) 4 significant digits."""
    value, (lo, hi) = r["value"], r["ci95"]
    unit = all(-1e-9 <= x <= 1 + 1e-9 for x in (value, lo, hi) if _finite(x))  # bootstrap bounds overshoot by ulps

    def f(x, places: int) -> str:
        return "–" if not _finite(x) else f"{x:.{places}f}" if unit else f"{x:.4g}"

    rest = [f"[{f(lo, 2)}, {f(hi, 2)}]"] if _finite(lo) and _finite(hi) else []
    rest += [f"(n={r['n']})"] if "n" in r else []
    return f(value, 3), " ".join(rest)


def text(v: Any) -> str:
    """One cell as one line of plain text."""
    if v is None:
        return "–"
    if is_rate(v):
        return " ".join(x for x in rate_text(v) if x)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "–"
    if isinstance(v, list) and v and all(not isinstance(x, (dict, list)) for x in v):
        shown = ", ".join(text(x) for x in v[:10])
        return shown + (f", … ({len(v)} in all)" if len(v) > 10 else "")
    if isinstance(v, (dict, list)):
        s = json.dumps(v, ensure_ascii=False)
        return s if len(s) <= 160 else s[:159] + "…"
    return str(v)


def _html_cell(v: Any) -> str:
    if is_rate(v):
        value, rest = rate_text(v)
        return f'<td class="num">{html.escape(value)}<span class="ci">{html.escape(rest)}</span></td>'
    numeric = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))  # "–" lines up with numbers
    body = re.sub(r"([.:])", r"\1<wbr>", html.escape(text(v)))  # long dotted paths break after a dot, not mid-word
    return f'<td{" class=num" if numeric else ""}>{body}</td>'


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


# ------------------------------------------------------------------------------------------------ the page


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
        parts = [f"<!doctype html>\n<html lang=en><head><meta charset=utf-8>\n<title>{html.escape(title)}</title>\n"
                 f"<meta name=viewport content='width=device-width, initial-scale=1'>\n<style>{CSS}</style></head>\n"
                 f"<body><main>\n<h1>{html.escape(title)}</h1>\n<p class=meta>{html.escape(meta)}</p>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif kind == "p":
                parts.append(f"<p class=note>{html.escape(block[1])}</p>")
            elif kind == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
                body = "\n".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block[2])
                parts.append(f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>")
            else:
                src, cap = html.escape(block[1], quote=True), html.escape(block[2])
                parts.append(f"<figure><img src=\"{src}\" alt=\"{html.escape(block[2], quote=True)}\"><figcaption>{cap}</figcaption></figure>")
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


# ------------------------------------------------------------------------------------------------ plots


def _grid(n: int):
    """A figure of n panels, three to a row."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, same output everywhere
    import matplotlib.pyplot as plt

    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def plot_curves(page: Page, name: str, caption: str, lines: dict[str, tuple[str, dict[str, list[tuple]]]]) -> None:
    """A panel per field, a line per label (one run, or each run of a comparison); shaded 95% intervals."""
    from matplotlib.ticker import MaxNLocator

    fields = list(dict.fromkeys(f for _, by_field in lines.values() for f in by_field))[:MAX_PANELS]
    fig, axes = _grid(len(fields))
    for ax, f in zip(axes, fields):
        for i, (label, (x_key, by_field)) in enumerate(lines.items()):
            if f not in by_field:
                continue
            xs, ys, lo, hi = zip(*by_field[f])
            colour = f"C{i % 10}"  # one colour per run in every panel
            ax.plot(xs, ys, "o-" if len(xs) <= 20 else "-", ms=3, label=label, color=colour)
            if all(v is not None for v in lo + hi):
                ax.fill_between(xs, lo, hi, alpha=0.15, color=colour)
            ax.set_xlabel(x_key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps and rounds are whole numbers
        ax.set_title(f, fontsize=10)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    page.figure(fig, name, caption)


def plot_alpha_sweep(page: Page, path: str, entries: dict[str, dict]) -> None:
    """Every rate an entry table holds against its entries' α (ACD's methods), each point named."""
    at = {e: flat for e, flat in entries.items() if _number(flat.get("alpha")) is not None}
    if len({flat["alpha"] for flat in at.values()}) < 2:
        return
    rates = [k for k in dict.fromkeys(k for flat in at.values() for k in flat)
             if "." not in k and sum(is_rate(flat.get(k)) for flat in at.values()) >= 2]
    if not rates:
        return
    fig, axes = _grid(len(rates[:MAX_PANELS]))
    for ax, k in zip(axes, rates):
        for e, flat in at.items():
            if is_rate(r := flat.get(k)) and _number(r) is not None:
                lo, hi = r["ci95"]  # a Wilson bound can miss the value by a rounding error: clip at 0
                ax.errorbar(flat["alpha"], r["value"], yerr=[[max(0, r["value"] - lo)], [max(0, hi - r["value"])]],
                            fmt="o", capsize=3)
                ax.annotate(e, (flat["alpha"], r["value"]), xytext=(4, 3), textcoords="offset points", fontsize=7)
        ax.set(title=k, xlabel="α")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    page.figure(fig, f"{path}-alpha", f"{path}: each rate against α (95% intervals)")


def plot_scatter(page: Page, name: str, found: tuple[str, str, list[tuple]]) -> None:
    s, u, points = found
    fig, (ax,) = _grid(1)
    fig.set_size_inches(6, 4.5)
    for label, x, y in points:
        ax.plot(x, y, "o")
        ax.annotate(label, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set(xlabel=s, ylabel=u.removesuffix(".value"), title=f"{s} vs {u.removesuffix('.value')}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    page.figure(fig, f"{name}-scatter", f"safety ({s}) against utility ({u.removesuffix('.value')})")


# ------------------------------------------------------------------------------------------------ the two pages


def single(page: Page, run: Run) -> None:
    leaves, tables = sections(run.metrics)
    page.heading("Metrics")
    page.table(["metric", "value"], [[k, v] for k, v in leaves.items()])
    for path, entries in tables:
        page.heading(path)
        page.columns(entries)
        plot_alpha_sweep(page, path, entries)
        if found := scatter_points(list(entries.items())):
            plot_scatter(page, path, found)
    plotted: set[tuple] = set()  # curves already drawn: eval.jsonl repeats the rounds of metrics.json, say

    def fresh(found: tuple[str, dict] | None) -> tuple[str, dict] | None:
        new = {f: pts for f, pts in (found[1] if found else {}).items() if tuple(p[:2] for p in pts) not in plotted}
        plotted.update(tuple(p[:2] for p in pts) for pts in new.values())
        return (found[0], new) if new else None

    for path, rows in series(run.metrics):
        page.heading(path)
        if found := fresh(curves(rows)):
            plot_curves(page, path, f"{path} over {found[0]}", {run.name: found})
        flat = [flatten(r) for r in rows]
        if len(rows) <= 10:  # a few rounds read best side by side, like the other tables
            x = next((k for k in X_KEYS if all(k in r for r in flat)), None)
            page.columns({f"{x} {r[x]}" if x else f"#{i + 1}": {k: v for k, v in r.items() if k != x}
                          for i, r in enumerate(flat)})
        else:
            keys = list(dict.fromkeys(k for r in flat for k in r))
            page.table(keys, [[r.get(k) for k in keys] for r in flat[:MAX_SERIES_ROWS]])
            page.note(f"first {MAX_SERIES_ROWS} of {len(rows)} rows; all of them are in the metrics file")
    for name, rows in run.logs.items():
        if found := fresh(curves(rows)):
            page.heading(f"log: {name}")
            plot_curves(page, name, f"{name}: {len(rows)} rows, averaged per {found[0]}", {run.name: found})
    if run.images:
        page.heading("Plots the run wrote")
        for p in run.images:
            page.copy(p, p.name)
    if run.config:
        page.heading("Config")
        page.table(["field", "value"], [[k, v] for k, v in flatten(run.config).items()])


def comparison(page: Page, runs: list[Run]) -> None:
    page.heading("Runs")
    page.table(["run", "path"], [[r.name, str(r.path)] for r in runs])
    page.heading("Metrics")
    flats = {r.name: flatten(r.metrics) for r in runs}
    page.columns(flats)
    if found := scatter_points(list(flats.items())):
        plot_scatter(page, "runs", found)
    for kind, per_run in (("", {r.name: dict(series(r.metrics)) for r in runs}), ("log: ", {r.name: r.logs for r in runs})):
        for path in dict.fromkeys(p for found in per_run.values() for p in found):
            lines = {name: c for name, found in per_run.items() if path in found and (c := curves(found[path]))}
            if lines:
                page.heading(kind + path)
                plot_curves(page, path, f"{kind}{path}: a line per run", lines)
    differing = [k for k in dict.fromkeys(k for r in runs for k in flatten(r.config))
                 if len({json.dumps(flatten(r.config).get(k), sort_keys=True) for r in runs}) > 1]
    if differing:
        page.heading("Config differences")
        page.table(["field", *flats], [[k, *(flatten(r.config).get(k) for r in runs)] for k in differing])
    for r in runs:
        if r.images:
            page.heading(f"Plots {r.name} wrote")
            for p in r.images:
                page.copy(p, f"{r.name}: {p.name}")


# ------------------------------------------------------------------------------------------------ command


def _check_output(out: Path, runs: list[Run]) -> None:
    # The output folder is replaced whole: never let that be a run, a folder holding a run, or anything else.
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / "report.html").is_file()):
        raise DetoxkitError(f"{out}: exists and is not a detoxkit report; choose another --output")
    for r in runs:
        if out.resolve() == r.path.resolve() or out.resolve() in r.path.resolve().parents:
            raise DetoxkitError(f"{out}: holds the run {r.path}; choose another --output")


def write_report(paths: list[str], output: str | None = None, title: str | None = None) -> tuple[Path, Page]:
    """Read every run (all errors come before anything is written), then write the folder atomically."""
    from .runs import atomic_dir

    runs = load_runs(paths)
    out = Path(output or (runs[0].path / "report" if len(runs) == 1 and runs[0].path.is_dir() else "report"))
    _check_output(out, runs)
    title = title or ("/".join(runs[0].path.parts[-2:]) if len(runs) == 1 else f"comparison of {len(runs)} runs: " + ", ".join(r.name for r in runs))
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = (f"{runs[0].path}" if len(runs) == 1 else f"{len(runs)} runs") + f" · detoxkit {__version__} · {when}"
    with atomic_dir(out) as tmp:
        page = Page(tmp)
        if len(runs) == 1:
            single(page, runs[0])
        else:
            comparison(page, runs)
        (tmp / "report.html").write_text(page.html(title, meta), encoding="utf-8")
        (tmp / "report.md").write_text(page.markdown(title, meta), encoding="utf-8")
    return out, page


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def main(argv: list[str]) -> int:
    parser = build_parser(ReportConfig, PROG)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders or metrics JSON files")
    options = vars(parser.parse_args(argv))
    paths = options.pop("runs")
    # The options go through parse_config for its YAML and type checks; every field takes a value, so --k=v is exact.
    cfg = parse_config(ReportConfig, [f"--{k}={v}" for k, v in options.items()], PROG)
    out, page = write_report(paths, cfg.output, cfg.title)
    print(f"report: {_count(len(paths), 'run')}, {_count(page.n_tables, 'table')}, {_count(page.n_images, 'image')} "
          f"-> {out}/report.html, {out}/report.md")
    return 0
