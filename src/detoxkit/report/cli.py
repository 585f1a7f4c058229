"""`detoxkit report RUN ...`: the single-run page, the comparison page, and writing the folder atomically."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .. import __version__
from ..config import Recipe, arg
from ..errors import DetoxkitError
from .page import Page
from .plots import plot_curves, plot_scatter, plot_sweep
from .read import Run, load_runs
from .shapes import X_KEYS, curves, flatten, scatter_points, sections, series

MAX_SERIES_ROWS = 25


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

    runs: list[str] = arg([], "run folders or metrics JSON files", positional=True)
    output: Optional[str] = arg(None, "output folder (default: RUN/report for one run folder, ./report otherwise)")
    title: Optional[str] = arg(None, "page title (default: the run's name, or 'comparison of N runs')")


def single(page: Page, run: Run) -> None:
    leaves, tables = sections(run.metrics)
    page.heading("Metrics")
    page.table(["metric", "value"], [[k, v] for k, v in leaves.items()])
    for path, entries in tables:
        page.heading(path)
        page.columns(entries)
        plot_sweep(page, path, entries)
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
            page.columns(
                {
                    f"{x} {r[x]}" if x else f"#{i + 1}": {k: v for k, v in r.items() if k != x}
                    for i, r in enumerate(flat)
                }
            )
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
    for kind, per_run in (
        ("", {r.name: dict(series(r.metrics)) for r in runs}),
        ("log: ", {r.name: r.logs for r in runs}),
    ):
        for path in dict.fromkeys(p for found in per_run.values() for p in found):
            lines = {name: c for name, found in per_run.items() if path in found and (c := curves(found[path]))}
            if lines:
                page.heading(kind + path)
                plot_curves(page, path, f"{kind}{path}: a line per run", lines)
    differing = [
        k
        for k in dict.fromkeys(k for r in runs for k in flatten(r.config))
        if len({json.dumps(flatten(r.config).get(k), sort_keys=True) for r in runs}) > 1
    ]
    if differing:
        page.heading("Config differences")
        page.table(["field", *flats], [[k, *(flatten(r.config).get(k) for r in runs)] for k in differing])
    for r in runs:
        if r.images:
            page.heading(f"Plots {r.name} wrote")
            for p in r.images:
                page.copy(p, f"{r.name}: {p.name}")


def _check_output(out: Path, runs: list[Run]) -> None:
    # The output folder is replaced whole: never let that be a run, a folder holding a run, or anything else.
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / "report.html").is_file()):
        raise DetoxkitError(f"{out}: exists and is not a detoxkit report; choose another --output")
    for r in runs:
        if out.resolve() == r.path.resolve() or out.resolve() in r.path.resolve().parents:
            raise DetoxkitError(f"{out}: holds the run {r.path}; choose another --output")


def write_report(paths: list[str], output: str | None = None, title: str | None = None) -> tuple[Path, Page]:
    """Read every run (all errors come before anything is written), then write the folder atomically."""
    from ..runs import atomic_dir

    runs = load_runs(paths)
    out = Path(output or (runs[0].path / "report" if len(runs) == 1 and runs[0].path.is_dir() else "report"))
    _check_output(out, runs)
    title = title or (
        "/".join(runs[0].path.parts[-2:])
        if len(runs) == 1
        else f"comparison of {len(runs)} runs: " + ", ".join(r.name for r in runs)
    )
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


def run(cfg: ReportConfig) -> dict:
    if not cfg.runs:
        raise DetoxkitError("report: give at least one RUN (a run folder or a metrics JSON file)")
    out, page = write_report(cfg.runs, cfg.output, cfg.title)
    return {"output": str(out), "runs": len(cfg.runs), "tables": page.n_tables, "images": page.n_images}


def summary(cfg: ReportConfig, r: dict) -> str:
    return (
        f"report: {_count(r['runs'], 'run')}, {_count(r['tables'], 'table')}, {_count(r['images'], 'image')} "
        f"-> {r['output']}/report.html, {r['output']}/report.md"
    )


REPORT = Recipe(ReportConfig, run, summary)
