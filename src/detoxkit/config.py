"""One config dataclass per recipe: defaults < YAML file < command-line flags.

Every field is declared with :func:`arg` (a default and a help string). The dataclass docstring is the
``--help`` text, each field becomes ``--field_name`` (Hugging Face ``TrainingArguments`` spelling where
one exists), and ``--config file.yaml`` may set any field. YAML errors name the file, line and field.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

from .errors import DataError, DetoxkitError


def arg(default: Any, help: str, choices: typing.Sequence | None = None) -> Any:
    """Declare a config field with its default and help text."""
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp):
    """Optional[X] -> (X, True); X -> (X, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp, field: str) -> Any:
    """Convert a YAML or CLI value to the field's declared type, or raise ValueError."""
    base, optional = _unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ValueError("may not be null")
    origin = typing.get_origin(base)
    if origin is Literal:
        allowed = typing.get_args(base)
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(base) or (str,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"must be a list, got {value!r}")
        return [_coerce(v, item_tp, field) for v in value]
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError(f"must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (
                isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"must be an integer, got {value!r}") from None
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"must be a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"must be a number, got {value!r}") from None
    if base is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"must be a string, got {value!r}")
        return str(value)
    return value


def _fields(cls) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def load_yaml(path: str | Path, cls) -> dict[str, Any]:
    """Read a YAML mapping of config fields; errors name the file, line and field."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DetoxkitError(f"{path}: config file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not a UTF-8 text file (byte {e.start}: {e.reason}); a config is YAML text") from None
    except OSError as e:
        raise DetoxkitError(f"{path}: cannot read the config file: {e.strerror or e}") from None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise DataError(path, f"invalid YAML: {getattr(e, 'problem', e)}", None if line is None else line + 1) from None
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise DataError(path, "a config file must be a mapping of field: value", node.start_mark.line + 1)
    known = _fields(cls)
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key, line = key_node.value, key_node.start_mark.line + 1
        if key not in known:
            raise DataError(path, f"unknown field for {cls.__name__} (known: {', '.join(known)})", line, key)
        value = yaml.safe_load(yaml.serialize(value_node))
        try:
            out[key] = _coerce(value, known[key][1], key)
        except ValueError as e:
            raise DataError(path, str(e), line, key) from None
    return out


def build_parser(cls, prog: str) -> argparse.ArgumentParser:
    """An argparse parser whose help is the dataclass docstring and field help strings."""
    doc = (cls.__doc__ or "").strip()
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", metavar="YAML", help="YAML file setting any of the fields below; flags override it")
    for name, (f, tp) in _fields(cls).items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f"{f.metadata.get('help', '')} (default: {default!r})".replace("%", "%%")  # argparse formats help
        base, _ = _unwrap_optional(tp)
        if base is bool:
            parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, help=help_text)
        else:
            choices = f.metadata.get("choices") or (typing.get_args(base) if typing.get_origin(base) is Literal else None)
            parser.add_argument(f"--{name}", metavar=name.upper(), help=help_text, choices=choices)
    return parser


def parse_config(cls, argv: list[str] | None, prog: str):
    """Build a config: defaults, then the ``--config`` YAML, then command-line flags."""
    ns = vars(build_parser(cls, prog).parse_args(argv))
    values: dict[str, Any] = {}
    if ns.get("config"):
        values.update(load_yaml(ns.pop("config"), cls))
    ns.pop("config", None)
    known = _fields(cls)
    for key, raw in ns.items():
        try:
            values[key] = _coerce(raw, known[key][1], key)
        except ValueError as e:
            raise DetoxkitError(f"--{key}: {e}") from None
    return cls(**values)


def config_to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    import yaml

    from .runs import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def parse_named(specs: list[str], field: str = "methods", what: str = "SOURCE") -> list[tuple[str, str]]:
    """NAME=VALUE items of a list field -> [(name, value)]; a malformed item is an error naming the field."""
    out = []
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value:
            raise DetoxkitError(f"--{field}: {spec!r} is not NAME={what.split(':')[0]} ({what})")
        out.append((name, value))
    return out
