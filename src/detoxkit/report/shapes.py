"""Metrics read by shape, never by a recipe's name: a rate ``{"value", "n", "ci95"}`` (from
:mod:`detoxkit.eval.stats`) is one cell; a mapping whose values are all mappings (methods, sources, rounds by name) is
a table with a column per entry; a list of mappings with a ``step``/``round``/``epoch`` field is a curve, as are the
JSONL logs beside metrics.json. Also how a value prints in a cell."""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_PANELS = 6  # panels of one figure: the most telling fields are kept
X_KEYS = ("step", "round", "epoch")  # the x axis of a curve, in order of preference
PRIORITY = re.compile(r"loss|pass|acc|rate|score|fool|auc|f1|J$|STA|SIM|FL", re.I)  # plotted first when space runs out
ID_KEYS = {"step", "round", "epoch", "index", "slot", "seed", "n"}  # numbers that name a row rather than measure it
# Toxicity-vs-utility scatter: a safety and a utility metric under the same parent, first match wins.
SAFETY = ("harmless_rate", "toxicity_probability", "expected_max_toxicity", "STA")
UTILITY = ("mc_accuracy", "perplexity.value", "SIM", "FL", "accuracy")
# A parameter an entry table sweeps (each entry one setting): its rates are plotted against it.
SWEEP_KEYS = ("alpha", "threshold", "feedback_noise", "beta", "reg_lambda", "rl_coef", "temperature")


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
        points = [
            (x, *ys[0]) if len(ys) == 1 else (x, sum(y[0] for y in ys) / len(ys), None, None)
            for x, ys in sorted(by_x.items())
        ]
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
