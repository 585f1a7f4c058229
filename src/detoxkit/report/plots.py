"""The report's plots (matplotlib, files only): curves over steps or rounds, rates against a swept parameter, and a
safety-against-utility scatter."""

from __future__ import annotations

import math

from .page import Page
from .shapes import MAX_PANELS, SWEEP_KEYS, _number, is_rate


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


def plot_sweep(page: Page, path: str, entries: dict[str, dict]) -> None:
    """Every rate an entry table holds against the parameter its entries sweep (the first of SWEEP_KEYS that at
    least two entries set to different numbers, e.g. ACD's α), each point named."""
    key = next(
        (k for k in SWEEP_KEYS if len({flat[k] for flat in entries.values() if _number(flat.get(k)) is not None}) >= 2),
        None,
    )
    if key is None:
        return
    at = {e: flat for e, flat in entries.items() if _number(flat.get(key)) is not None}
    rates = [
        k
        for k in dict.fromkeys(k for flat in at.values() for k in flat)
        if "." not in k and sum(is_rate(flat.get(k)) for flat in at.values()) >= 2
    ]
    if not rates:
        return
    fig, axes = _grid(len(rates[:MAX_PANELS]))
    for ax, k in zip(axes, rates):
        for e, flat in at.items():
            if is_rate(r := flat.get(k)) and _number(r) is not None:
                lo, hi = r["ci95"]  # a Wilson bound can miss the value by a rounding error: clip at 0
                ax.errorbar(
                    flat[key],
                    r["value"],
                    yerr=[[max(0, r["value"] - lo)], [max(0, hi - r["value"])]],
                    fmt="o",
                    capsize=3,
                )
                ax.annotate(e, (flat[key], r["value"]), xytext=(4, 3), textcoords="offset points", fontsize=7)
        ax.set(title=k, xlabel=key)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    page.figure(fig, f"{path}-{key}", f"{path}: each rate against {key} (95% intervals)")


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
