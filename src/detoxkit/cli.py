"""The `detoxkit` command. Every command is a :class:`~detoxkit.config.Recipe` (config, run, summary), named here
as "module:ATTRIBUTE" and imported only when it runs, so --help is instant."""

from __future__ import annotations

import importlib
import sys

from . import __version__

# name -> ("module:RECIPE", one-line help), or for a group ({subcommand: ("module:RECIPE", help)}, help); a module
# is named within the detoxkit package.
COMMANDS: dict = {
    "env": ("commands.env:ENV", "versions, devices, and where each builtin asset was found"),
    "data": (
        {
            "list": ("commands.data:LIST", "every builtin dataset with its fields, source and license"),
            "show": ("commands.data:SHOW", "the first rows of a dataset (builtin:NAME, a file, a datasets name)"),
        },
        "builtin datasets: list, show",
    ),
    "score": ("commands.score:SCORE", "score texts with a scorer (toxicity, profanity, refusal, harm, lm-judge)"),
    "scorer": (
        {"train": ("scorers.train:TRAIN", "train a scorer head and write its model card")},
        "train a scorer head: toxicity, refusal or harm",
    ),
    "eval": ("commands.evaluate:EVAL", "metrics on a model or a JSONL of generations -> metrics.json"),
    "sro": (
        {
            "train": ("sro.train:TRAIN", "train a rewriter online against a screener (or a baseline: --loss_type)"),
            "eval": ("sro.evaluate:EVAL", "STA/SIM/FL/J and BLEU/chrF of rewriters on held-out ParaDetox"),
        },
        "SRO detoxifying rewriter: train, eval",
    ),
    "rewrite": ("sro.rewrite:REWRITE", "rewrite toxic text with a trained SRO rewriter"),
    "demo": ("commands.demo:DEMO", "the builtin model and the guard on harmful and benign prompts, scored"),
    "acd": (
        {
            "anchors": ("acd.anchors:ANCHORS", "the anchor set (D_HR, D_HA, D_S) from the model's own answers"),
            "tune": ("acd.tune:TUNE", "Opposite Prompt Optimization of the two soft prompts (model frozen)"),
            "generate": ("acd.generate:GENERATE", "answer prompts with contrastive decoding"),
            "eval": ("acd.evaluate:EVAL", "ACD vs its baselines: α sweep, harmless rate, over-refusal, utility"),
        },
        "Adversarial Contrastive Decoding: anchors, tune, generate, eval",
    ),
    "adversarial": (
        {
            "run": ("adversarial.loop:RUN", "the attacker-judge loop for --rounds N rounds (resumable)"),
            "eval": ("adversarial.evaluate:EVAL", "per-round judge accuracy vs the reference, attacker success"),
        },
        "attacker-judge loop: run, eval",
    ),
    "judge": ("adversarial.judge:CLASSIFY", "classify prompts with a trained judge"),
    "attribute": (
        {
            "nado-train": ("attribute.nado_train:NADO_TRAIN", "train a NADO model R for a frozen model"),
            "train": ("attribute.train:TRAIN", "fine-tune with the NADO KL regulariser, or a baseline (--method)"),
            "eval": ("attribute.evaluate:EVAL", "toxicity, utility, win rate (and classification) of models"),
        },
        "attribute-controlled fine-tuning with a NADO regulariser: nado-train, train, eval",
    ),
    "serve": (
        "guard.server:SERVE",
        "the guard behind an OpenAI-compatible server (the builtin bundle, or --config guard.yaml or a bundle)",
    ),
    "guard": (
        {
            "eval": ("guard.evaluate:EVAL", "a guard (bundle or YAML) on labelled prompts, each stage ablated"),
            "calibrate": ("guard.calibrate:CALIBRATE", "judge/screener thresholds and ACD α chosen on validation"),
            "build": ("guard.build:BUILD", "train every piece of the guard into a calibrated bundle (resumable)"),
        },
        "the guard as a whole: build, calibrate, eval",
    ),
    "report": ("report.cli:REPORT", "an HTML and markdown report of one or more run folders"),
}

FOOTER = """Caches live in $DETOXKIT_CACHE (default ~/.cache/detoxkit); the shared corpora are found with
--data_dir or $DETOXKIT_DATA. Errors print one line and exit with code 2."""


def _usage(prog: str, commands: dict) -> str:
    lines = [f"  {name:<12}{help_}" for name, (_, help_) in commands.items()]
    return f"usage: {prog} COMMAND [ARGS] ({prog} COMMAND --help for each)\n\ncommands:\n" + "\n".join(lines)


def _recipe(target: str):
    module, attr = target.split(":")
    return getattr(importlib.import_module(f".{module}", __package__), attr)


def dispatch(prog: str, commands: dict, argv: list[str]) -> int:
    """Run `prog NAME ...`: a recipe, or a group whose first argument names the recipe."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage(prog, commands) + ("\n\n" + FOOTER if prog == "detoxkit" else ""))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"{prog}: unknown command {name!r}\n\n{_usage(prog, commands)}", file=sys.stderr)
        return 2
    target = commands[name][0]
    if isinstance(target, dict):
        return dispatch(f"{prog} {name}", target, rest)
    return _recipe(target).main(rest, f"{prog} {name}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-V", "--version"):
        print(f"detoxkit {__version__}")
        return 0
    from .errors import DetoxkitError

    try:
        return dispatch("detoxkit", COMMANDS, argv) or 0
    except DetoxkitError as e:
        print(f"detoxkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("detoxkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
