"""One config dataclass per recipe: defaults < YAML file < command-line flags; and the one shape of a command.

Every field is declared with :func:`arg` (a default and a help string). The dataclass docstring is the
``--help`` text, each field becomes ``--field_name`` (Hugging Face ``TrainingArguments`` spelling where
one exists), and ``--config file.yaml`` may set any field. YAML errors name the file, line and field.

Fields several recipes share (seed, output folder, device and dtype, optimiser, checkpoints and logging, LoRA,
generation) are declared once, in the mixins below; a recipe inherits the ones it has and sets its own defaults
with :func:`with_defaults`.
Every command is a :class:`Recipe`: its config class, ``run(cfg) -> result`` (what a Python user calls) and a
one-line summary of the result.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

from .errors import DataError, DetoxkitError


def arg(default: Any, help: str, choices: typing.Sequence | None = None, positional: bool = False) -> Any:
    """Declare a config field with its default and help text; positional: a list field read from the command
    line's bare arguments (``detoxkit score "text" ...``)."""
    meta = {"help": help, "positional": positional}
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
    if base in (int, float):
        what = "an integer" if base is int else "a number"
        whole = not (base is int and isinstance(value, float) and not value.is_integer())
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or not whole:
            raise ValueError(f"must be {what}, got {value!r}")
        try:
            return base(value)
        except ValueError:
            raise ValueError(f"must be {what}, got {value!r}") from None
    if base is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"must be a string, got {value!r}")
        return str(value)
    return value


def _fields(cls) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def compose_yaml(path: str | Path, what: str = "config"):
    """The YAML node tree of a file (None when empty), keeping line numbers for errors; read and syntax errors
    name the file and line. `what` says what kind of file it is in those errors."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DetoxkitError(f"{path}: {what} file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not a UTF-8 text file (byte {e.start}: {e.reason}); a {what} is YAML text") from None
    except OSError as e:
        raise DetoxkitError(f"{path}: cannot read the {what} file: {e.strerror or e}") from None
    try:
        return yaml.compose(text)
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise DataError(path, f"invalid YAML: {getattr(e, 'problem', e)}", None if line is None else line + 1) from None


def load_yaml(path: str | Path, cls) -> dict[str, Any]:
    """Read a YAML mapping of config fields; errors name the file, line and field."""
    import yaml

    path = Path(path)
    node = compose_yaml(path)
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
    """An argparse parser whose help is the dataclass docstring and field help strings: the recipe's own fields
    first, then the run options its mixins bring."""
    doc = (cls.__doc__ or "").strip()
    parser = argparse.ArgumentParser(
        prog=prog,
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", metavar="YAML", help="YAML file setting any of the fields below; flags override it")
    common = parser.add_argument_group("run options")
    shared = {
        n
        for b in cls.__mro__
        if isinstance(b, type) and issubclass(b, Mixin) and b is not Mixin
        for n in b.__dict__.get("__annotations__", {})
    }
    for name, (f, tp) in _fields(cls).items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f"{f.metadata.get('help', '')} (default: {default!r})".replace("%", "%%")  # argparse formats help
        group = common if name in shared else parser
        base, _ = _unwrap_optional(tp)
        if f.metadata.get("positional"):
            group.add_argument(name, nargs="*", metavar=name.upper().rstrip("S"), help=help_text)
        elif base is bool:
            group.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, help=help_text)
        else:
            choices = f.metadata.get("choices") or (
                typing.get_args(base) if typing.get_origin(base) is Literal else None
            )
            group.add_argument(f"--{name}", metavar=name.upper(), help=help_text, choices=choices)
    return parser


def parse_flags(cls, argv: list[str] | None, prog: str) -> tuple[str | None, dict[str, Any]]:
    """The command line -> (its ``--config`` value or None, the fields its flags set, typed)."""
    ns = vars(build_parser(cls, prog).parse_args(argv))
    config = ns.pop("config", None) or None
    known = _fields(cls)
    values: dict[str, Any] = {}
    for key, raw in ns.items():
        try:
            values[key] = _coerce(raw, known[key][1], key)
        except ValueError as e:
            raise DetoxkitError(f"--{key}: {e}") from None
    return config, values


def parse_config(cls, argv: list[str] | None, prog: str):
    """Build a config: defaults, then the ``--config`` YAML, then command-line flags."""
    config, flags = parse_flags(cls, argv, prog)
    return cls(**{**(load_yaml(config, cls) if config else {}), **flags})


def parse_named(specs: list[str], field: str = "methods", what: str = "SOURCE") -> list[tuple[str, str]]:
    """NAME=VALUE items of a list field -> [(name, value)]; a malformed item is an error naming the field."""
    out = []
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value:
            raise DetoxkitError(f"--{field}: {spec!r} is not NAME={what.split(':')[0]} ({what})")
        out.append((name, value))
    return out


# ------------------------------------------------------------------------------------------------ shared fields


class Mixin:
    """Marks a dataclass of fields several recipes share; --help lists them under "run options"."""


@dataclasses.dataclass
class SeedArgs(Mixin):
    seed: int = arg(0, "seed of every random choice of the run (data order, sampling, initialisation)")


@dataclasses.dataclass
class OutputArgs(Mixin):
    output_dir: str = arg("runs/run", "run folder: config.yaml, checkpoints, logs and metrics.json")


@dataclasses.dataclass
class DeviceArgs(Mixin):
    device: str = arg("cpu", "where the model runs: cpu, cuda, cuda:N, or auto (cuda when there is one)")
    dtype: Literal["float32", "bfloat16", "float16"] = arg(
        "float32", "dtype of the model weights (bfloat16 halves memory; float32 on a CPU is the reference)"
    )


@dataclasses.dataclass
class ResumeArgs(Mixin):
    resume_from_checkpoint: typing.Optional[str] = arg(None, "'latest' or a checkpoint folder to resume from")


@dataclasses.dataclass
class DataDirArgs(Mixin):
    data_dir: typing.Optional[str] = arg(None, "the shared corpora folder (default: $DETOXKIT_DATA or ../shared/data)")


@dataclasses.dataclass
class TrainArgs(Mixin):
    """What every recipe that trains sets: the learning rate and the batch."""

    learning_rate: float = arg(2e-5, "AdamW learning rate")
    per_device_train_batch_size: int = arg(8, "examples per optimizer step and device")


@dataclasses.dataclass
class OptimArgs(TrainArgs):
    """A training run counted in optimizer steps, with AdamW's weight decay."""

    weight_decay: float = arg(0.0, "AdamW weight decay")
    max_steps: int = arg(100, "optimizer steps")


@dataclasses.dataclass
class ClipArgs(Mixin):
    max_grad_norm: float = arg(1.0, "gradient clipping norm (0 = off)")


@dataclasses.dataclass
class LoggingArgs(Mixin):
    logging_steps: int = arg(10, "log the losses every this many steps")


@dataclasses.dataclass
class CheckpointArgs(Mixin):
    save_steps: int = arg(100, "checkpoint every this many steps (0 = only at the end)")


@dataclasses.dataclass
class CheckpointLimitArgs(Mixin):
    save_total_limit: int = arg(2, "checkpoints to keep")


@dataclasses.dataclass
class LoraArgs(Mixin):
    lora_r: int = arg(16, "LoRA rank")
    lora_alpha: int = arg(32, "LoRA alpha")
    lora_target_modules: str = arg(
        "all-linear", "LoRA target modules (PEFT syntax: all-linear, or comma-separated names)"
    )


@dataclasses.dataclass
class GenerationArgs(Mixin):
    max_new_tokens: int = arg(64, "tokens to generate per answer")
    batch_size: int = arg(16, "prompts per generation batch")


@dataclasses.dataclass
class SamplingOptions(Mixin):
    temperature: float = arg(1.0, "sampling temperature")
    top_p: float = arg(1.0, "nucleus sampling mass (1 = off)")


@dataclasses.dataclass
class RunArgs(SeedArgs, OutputArgs, DeviceArgs):
    """seed, output_dir, device, dtype: what every recipe that writes a run folder has."""


@dataclasses.dataclass
class FineTuneArgs(RunArgs, ResumeArgs, OptimArgs, ClipArgs):
    """RunArgs, resume_from_checkpoint, the optimiser and gradient clipping: what every recipe that trains a model
    (or its prompts) by clipped optimizer steps has."""


@dataclasses.dataclass(frozen=True)
class Default:
    """A recipe's default for an inherited field together with help text of its own: ``Default(4, "pairs per step")``."""

    value: Any
    help: str


def with_defaults(**defaults):
    """Class decorator, under ``@dataclass``: this recipe's defaults for fields it inherits from mixins (their type
    stays the mixin's; so does the help, unless the value is a :class:`Default`)."""

    def wrap(cls):
        own = dict(cls.__dict__.get("__annotations__", {}))
        for name, value in defaults.items():
            base = next((b for b in cls.__mro__[1:] if name in getattr(b, "__dataclass_fields__", {})), None)
            if base is None:
                raise TypeError(f"{cls.__name__}: no inherited field {name!r} to set a default for")
            f = base.__dataclass_fields__[name]
            own[name] = typing.get_type_hints(base)[name]
            value, help_ = (
                (value.value, value.help) if isinstance(value, Default) else (value, f.metadata.get("help", ""))
            )
            setattr(cls, name, arg(value, help_, f.metadata.get("choices")))
        cls.__annotations__ = own
        return cls

    return wrap


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A command: its config class (the docstring is its --help), ``run(cfg) -> result`` (the Python API) and a
    one-line ``summary(cfg, result)`` the command prints at the end (None: the run prints its own output)."""

    config: type
    run: typing.Callable[[Any], Any]
    summary: typing.Optional[typing.Callable[[Any, Any], str]] = None

    def main(self, argv: list[str], prog: str = "detoxkit") -> int:
        cfg = parse_config(self.config, argv, prog)
        result = self.run(cfg)
        if self.summary is not None:
            print(self.summary(cfg, result), flush=True)
        return 0
