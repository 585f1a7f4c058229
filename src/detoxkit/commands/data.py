"""`detoxkit data list` and `detoxkit data show NAME [--n 5]`."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..config import DataDirArgs, Recipe, arg


@dataclass
class DataListConfig:
    """detoxkit data list: every builtin dataset with its fields, source and license."""


@dataclass
class DataShowConfig(DataDirArgs):
    """detoxkit data show NAME: how many rows a dataset has, and its first rows as JSON."""

    name: list[str] = arg([], "builtin:NAME (or just NAME), a file, or a datasets name", positional=True)
    n: int = arg(5, "rows to print")


def list_datasets(cfg: DataListConfig) -> list[str]:
    from ..data import REGISTRY

    for entry in sorted(REGISTRY.values(), key=lambda e: (e.origin, e.name)):
        print(f"builtin:{entry.name}  [{entry.origin}]  fields: {', '.join(entry.fields)}")
        print(f"    {entry.description}")
        print(f"    source: {entry.source}; license: {entry.license}")
    return sorted(REGISTRY)


def show(cfg: DataShowConfig) -> int:
    from ..data import load_records
    from ..errors import DetoxkitError

    if len(cfg.name) != 1:
        raise DetoxkitError("data show: give one dataset NAME (see `detoxkit data list`)")
    name = cfg.name[0] if ":" in cfg.name[0] or "." in cfg.name[0] else f"builtin:{cfg.name[0]}"
    rows = load_records(name, data_dir=cfg.data_dir)
    print(f"{name}: {len(rows)} rows")
    for row in rows[: cfg.n]:
        print(json.dumps(row, ensure_ascii=False)[:400])
    return len(rows)


LIST = Recipe(DataListConfig, list_datasets)
SHOW = Recipe(DataShowConfig, show)
