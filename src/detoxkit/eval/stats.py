"""Intervals for rates and means."""

from __future__ import annotations

import math
from typing import Callable, Sequence


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (well behaved near 0 and 1, unlike Wald)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def format_ci(m: dict | None, digits: int = 3, missing: str = "-") -> str:
    """A {"value", "ci95"} record as "0.123 [0.05, 0.30]" for tables and reports; `missing` when there is none."""
    if not m:
        return missing
    lo, hi = m["ci95"]
    return f"{m['value']:.{digits}f} [{lo:.2f}, {hi:.2f}]"


def rate(flags: Sequence[bool]) -> dict:
    """{"value", "n", "ci95"} for the share of True flags."""
    n = len(flags)
    k = sum(bool(f) for f in flags)
    return {"value": k / n if n else float("nan"), "n": n, "ci95": list(wilson_interval(k, n))}


def mean_ci(values: Sequence[float], z: float = 1.959964, bounds: tuple[float, float] | None = None) -> dict:
    """{"value", "n", "ci95"} for a mean, by the normal approximation with the sample standard deviation; bounds:
    the range the values live in (e.g. (0, 1) for scores), which the interval is clipped to."""
    n = len(values)
    if n == 0:
        return {"value": float("nan"), "n": 0, "ci95": [float("nan"), float("nan")]}
    m = sum(values) / n
    if n == 1:
        return {"value": m, "n": 1, "ci95": [m, m]}
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    half = z * sd / math.sqrt(n)
    lo, hi = m - half, m + half
    if bounds is not None:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return {"value": m, "n": n, "ci95": [lo, hi]}


def bootstrap_ci(statistic: Callable[..., float], *arrays: Sequence, n_boot: int = 1000, seed: int = 0) -> list[float]:
    """Percentile bootstrap 95% interval of statistic(*arrays) resampling rows jointly."""
    import warnings

    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    stats = []
    with warnings.catch_warnings():  # a resample with one class warns, raises or gives NaN in scikit-learn: skip it
        warnings.simplefilter("ignore")
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            try:
                stats.append(statistic(*(a[idx] for a in arrays)))
            except ValueError:
                continue
    stats = [x for x in stats if not np.isnan(x)]
    if not stats:
        return [float("nan"), float("nan")]
    return [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]


def seed_spread(per_seed: dict) -> dict:
    """{per_seed, mean, sd} of one figure over training seeds ({seed: value}); sd is None for one seed, and mean and sd
    are None where a seed has no value."""
    import statistics

    values = list(per_seed.values())
    known = None not in values
    return {
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "mean": statistics.mean(values) if known else None,
        "sd": statistics.stdev(values) if known and len(values) > 1 else None,
    }
