"""Guard bundles: a folder holding ``guard.yaml`` and the trained pieces it names by paths relative to the folder.

``load_guard_config(path)`` takes a bundle folder or a guard YAML and returns a :class:`GuardConfig` whose piece
paths are absolute; a piece that names a file of the bundle which is not there is an error naming guard.yaml and
the field. Model names (``smollm2-135m-instruct``) and prompt texts pass through unchanged.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError, DetoxkitError
from .config import GuardConfig, is_off

BUNDLE_FILE = "guard.yaml"
PIECE_FIELDS = ("model", "judge", "acd_safe_prompt", "acd_adv_prompt", "rewriter")


def _looks_like_path(value: str) -> bool:
    return value.startswith(("./", "../")) or value.endswith((".safetensors", ".json", "/")) or "/" in value.strip("/")


def load_guard_config(path: str | Path, **overrides) -> GuardConfig:
    """A guard bundle folder or a guard YAML -> GuardConfig (overrides: fields to set, e.g. device, dtype)."""
    from ..config import load_yaml

    path = Path(path)
    if path.is_dir():
        yaml_path = path / BUNDLE_FILE
        if not yaml_path.is_file():
            raise DetoxkitError(f"{path}: not a guard bundle (no {BUNDLE_FILE} in it)")
        values = load_yaml(yaml_path, GuardConfig)
        for field in PIECE_FIELDS:
            value = values.get(field)
            if isinstance(value, str) and not is_off(value) and not Path(value).is_absolute():
                local = path / value
                if local.exists():
                    values[field] = str(local)
                elif _looks_like_path(value):
                    raise DataError(yaml_path, f"names {value!r}, which is not in the bundle", None, field)
    elif path.is_file():
        values = load_yaml(path, GuardConfig)
    else:
        raise DetoxkitError(f"{path}: no such guard bundle folder or guard YAML")
    return GuardConfig(**{**values, **overrides})
