"""Guard bundles: a folder holding ``guard.yaml`` and the trained pieces it names by paths relative to the folder.

``load_guard_config(path)`` takes a bundle folder or a guard YAML and returns a :class:`GuardConfig` whose piece
paths are absolute; a piece that names a file of the bundle which is not there is an error naming guard.yaml and
the field. Model names (``smollm2-135m-instruct``) and prompt texts pass through unchanged.

The builtin bundle (``BUILTIN_BUNDLE``, the guard built for the builtin model) ships inside the package, so an
installed detoxkit finds it without a path; ``builtin_bundle()`` is None until it has been built there.
"""

from __future__ import annotations

from pathlib import Path

import detoxkit

from ..errors import DataError, DetoxkitError
from .config import GuardConfig, is_off

BUNDLE_FILE = "guard.yaml"
BUILTIN_BUNDLE = Path(detoxkit.__file__).parent / "guards" / "smollm2-135m"
PIECE_FIELDS = ("model", "judge", "acd_safe_prompt", "acd_adv_prompt", "rewriter")


def _looks_like_path(value: str) -> bool:
    return value.startswith(("./", "../")) or value.endswith((".safetensors", ".json", "/")) or "/" in value.strip("/")


def builtin_bundle() -> Path | None:
    """The builtin bundle's folder when its guard.yaml is there (it is built, not written by hand), else None."""
    return BUILTIN_BUNDLE if (BUILTIN_BUNDLE / BUNDLE_FILE).is_file() else None


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
        check_base_models(values, yaml_path)
    elif path.is_file():
        values = load_yaml(path, GuardConfig)
    else:
        raise DetoxkitError(f"{path}: no such guard bundle folder or guard YAML")
    return GuardConfig(**{**values, **overrides})


def trained_on(field: str, piece: str) -> str | None:
    """The base model a trained piece records (judge run or folder, SRO rewriter folder, soft prompt file); None
    for a piece that records none (an untrained model name, a prompt text)."""
    import json

    from ..runs import list_checkpoints

    p = Path(piece)
    try:
        if field == "judge" and p.is_dir():
            ckpts = list_checkpoints(p) if (p / "prompts.jsonl").exists() else []
            state = (ckpts[-1] if ckpts else p) / ("trainer_state.json" if ckpts else "judge.json")
            meta = json.loads(state.read_text()) if state.exists() else {}
            return (meta.get("judge", meta) or {}).get("base_model")
        if field == "rewriter" and (p / "rewriter.json").exists():
            return json.loads((p / "rewriter.json").read_text()).get("base_model")
        if field.startswith("acd_") and p.suffix == ".safetensors" and p.is_file():
            from ..lm.soft_prompt import SoftPrompt

            return SoftPrompt.load(p).model_name
    except (OSError, ValueError, DetoxkitError):
        return None
    return None


def check_base_models(values: dict, yaml_path: Path) -> None:
    """Every trained piece of a bundle must have been trained on the bundle's model; the error names the field."""
    model = values.get("model", GuardConfig.model)
    for field in PIECE_FIELDS[1:]:
        piece = values.get(field)
        if isinstance(piece, str) and not is_off(piece):
            base = trained_on(field, piece)
            if base and Path(str(base)).name != Path(str(model)).name:
                raise DataError(yaml_path, f"was trained on {base!r}, but the bundle's model is {model!r}", None, field)
