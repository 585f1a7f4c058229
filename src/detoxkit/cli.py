"""The `detoxkit` command. Each subcommand's module is imported only when it runs, so --help is instant."""

from __future__ import annotations

import importlib
import sys

from . import __version__

# name -> ("module:function", one-line help). Each function takes the remaining argv.
COMMANDS: dict[str, tuple[str, str]] = {
    "env": ("detoxkit.commands.env:main", "versions, devices, and where each builtin asset was found"),
    "data": ("detoxkit.commands.data:main", "list or show builtin datasets (`data list`, `data show NAME`)"),
    "score": ("detoxkit.commands.score:main", "score texts with a scorer (toxicity, profanity, refusal, harm, lm-judge)"),
    "scorer": ("detoxkit.scorers.train:main", "train a scorer head: toxicity, refusal or harm (`scorer train`)"),
    "eval": ("detoxkit.commands.evaluate:main", "metrics on a model or a JSONL of generations -> metrics.json"),
    "sro": ("detoxkit.sro.cli:main", "SRO detoxifying rewriter: train, eval"),
    "rewrite": ("detoxkit.sro.cli:rewrite_main", "rewrite toxic text with a trained SRO rewriter"),
    "demo": ("detoxkit.commands.demo:main", "the builtin model on a few harmful and benign prompts, scored"),
    "acd": ("detoxkit.acd.cli:main", "Adversarial Contrastive Decoding: anchors, tune, generate, eval"),
    "adversarial": ("detoxkit.adversarial.cli:main", "attacker-judge loop: run, eval"),
    "judge": ("detoxkit.adversarial.cli:judge_main", "classify a prompt with a trained judge"),
    "attribute": ("detoxkit.attribute.cli:main", "attribute-controlled fine-tuning with a NADO regulariser: nado-train, train, eval"),
    "serve": ("detoxkit.guard.server:main", "the guard behind an OpenAI-compatible server (--config guard.yaml)"),
    "report": ("detoxkit.report:main", "an HTML and markdown report of one or more run folders"),
}

USAGE = f"""usage: detoxkit COMMAND [ARGS] (detoxkit COMMAND --help for each)

detoxkit {__version__}: make language models stop producing toxic or harmful content.

commands:
""" + "\n".join(f"  {name:<12}{help_}" for name, (_, help_) in COMMANDS.items()) + """

Caches live in $DETOXKIT_CACHE (default ~/.cache/detoxkit); the shared corpora are found with
--data_dir or $DETOXKIT_DATA. Errors print one line and exit with code 2."""


def dispatch(prog: str, subcommands: dict[str, tuple[str, str]], argv: list[str]) -> int:
    """Run `prog SUB ...` where subcommands maps SUB -> ("module:function", one-line help); lazy imports."""
    usage = (f"usage: {prog} {{{','.join(subcommands)}}} [--config YAML] [--FIELD VALUE ...] (each has --help)\n\n"
             + "\n".join(f"  {name:<10}{help_}" for name, (_, help_) in subcommands.items()))
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage)
        return 0
    if argv[0] not in subcommands:
        print(f"{prog}: unknown subcommand {argv[0]!r}\n\n{usage}", file=sys.stderr)
        return 2
    module, func = subcommands[argv[0]][0].split(":")
    return getattr(importlib.import_module(module), func)(argv[1:])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"detoxkit {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"detoxkit: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module, func = COMMANDS[argv[0]][0].split(":")
    from .errors import DetoxkitError

    try:
        return getattr(importlib.import_module(module), func)(argv[1:]) or 0
    except DetoxkitError as e:
        print(f"detoxkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("detoxkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
