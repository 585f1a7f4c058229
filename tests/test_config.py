import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import pytest

from detoxkit.config import arg, parse_config
from detoxkit.errors import DataError, DetoxkitError


@dataclass
class Cfg:
    """A test recipe."""

    learning_rate: float = arg(1e-3, "lr")
    max_steps: int = arg(10, "steps")
    names: list[str] = arg(["a", "b"], "names")
    mode: Literal["x", "y"] = arg("x", "mode")
    flag: bool = arg(False, "flag")
    resume_from_checkpoint: Optional[str] = arg(None, "resume")


def test_precedence_defaults_yaml_cli(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("learning_rate: 0.5\nmax_steps: 3\nnames: [p, q]\nflag: true\n")
    cfg = parse_config(Cfg, ["--config", str(y), "--max_steps", "7", "--mode", "y"], "t")
    assert cfg.learning_rate == 0.5 and cfg.max_steps == 7 and cfg.names == ["p", "q"] and cfg.flag and cfg.mode == "y"
    assert parse_config(Cfg, ["--names", "u,v", "--no-flag"], "t").names == ["u", "v"]
    assert parse_config(Cfg, [], "t") == Cfg()


def test_yaml_errors_name_file_line_and_field(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("learning_rate: 0.5\nmax_stepz: 3\n")
    with pytest.raises(DataError, match=r"bad.yaml:2: field 'max_stepz': unknown field"):
        parse_config(Cfg, ["--config", str(y)], "t")
    y.write_text("max_steps: 1.5\n")
    with pytest.raises(DataError, match=r"bad.yaml:1: field 'max_steps': must be an integer"):
        parse_config(Cfg, ["--config", str(y)], "t")
    y.write_text("mode: z\n")
    with pytest.raises(DataError, match="must be one of x, y"):
        parse_config(Cfg, ["--config", str(y)], "t")


def test_cli_type_error_is_clear():
    with pytest.raises(DetoxkitError, match="--max_steps"):
        parse_config(Cfg, ["--max_steps", "many"], "t")


def test_help_is_docstring_and_fast():
    out = subprocess.run([sys.executable, "-m", "detoxkit.cli", "--help"], capture_output=True, text=True, check=True)
    assert "detoxkit" in out.stdout and "scorer" in out.stdout
    # --help must not import torch (lazy imports keep it instant).
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from detoxkit import cli; cli.main(['--help']); print('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip().endswith("False")


def test_every_recipe_help_renders():
    """--help of every command formats (a bare % in a field's help once broke `sro train --help`) and opens with
    its config's docstring; every command is a Recipe."""
    from detoxkit.cli import COMMANDS, _recipe
    from detoxkit.config import Recipe, build_parser

    def targets(commands):
        for target, _ in commands.values():
            yield from targets(target) if isinstance(target, dict) else [target]

    found = list(targets(COMMANDS))
    assert len(found) >= 20
    for target in found:
        recipe = _recipe(target)
        assert isinstance(recipe, Recipe), target
        text = build_parser(recipe.config, "detoxkit x").format_help()
        assert (recipe.config.__doc__ or "").strip().splitlines()[0] in text, target


def test_every_shipped_config_parses_for_the_command_it_names():
    """configs/*.yaml open with the command that runs them; each must load into that command's config."""
    from detoxkit.cli import COMMANDS, _recipe
    from detoxkit.config import load_yaml

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        words = path.read_text().splitlines()[0].lstrip("# ").split()
        assert words[0] == "detoxkit", path
        entry = COMMANDS[words[1]]
        target = entry[0][words[2]][0] if isinstance(entry[0], dict) else entry[0]
        cls = _recipe(target).config
        cls(**load_yaml(path, cls))
