"""Reading what a report shows: a run folder (metrics.json, its config, JSONL logs, PNGs) or a metrics JSON file;
errors name the path."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, DetoxkitError


@dataclass
class Run:
    name: str
    path: Path
    metrics: dict
    config: dict = field(default_factory=dict)
    logs: dict[str, list[dict]] = field(default_factory=dict)  # JSONL file name -> rows
    images: list[Path] = field(default_factory=list)


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
    from ..runs import read_jsonl

    path = Path(path)
    if not path.exists():
        raise DetoxkitError(f"{path}: no such run folder or metrics file")
    if path.is_file():
        images = sorted({*path.parent.glob(f"{path.stem}.png"), *path.parent.glob(f"{path.stem}_*.png")})
        return Run(path.stem, path, _read_json(path), images=images)
    if not (path / "metrics.json").is_file():
        raise DetoxkitError(
            f"{path}: no metrics.json in this folder (not a finished run? an `adversarial run` "
            "folder gets one from `detoxkit adversarial eval`)"
        )
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
