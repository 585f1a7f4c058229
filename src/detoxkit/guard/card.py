"""CARD.md of a guard bundle: what each piece was trained on and by which command, its adapter against the trained
piece, the validation numbers of calibration, the test numbers, the scorers, the known failure modes.

``guard build`` writes the card; the test section is left for ``benchmarks/guard.py``, which scores the finished
bundle once on the test prompts (never used by the build) and fills it in between the TEST markers.
"""

from __future__ import annotations

import json
from pathlib import Path

TEST_BEGIN = "<!-- test numbers: written by benchmarks/guard.py --section bundle -->"
TEST_END = "<!-- end of test numbers -->"

PIECES = {
    "judge": (
        "judge/",
        "the model asked whether a request is problematic ('1' or '0'), LoRA-tuned by the adversarial loop (O'Neill "
        "et al. 2023): an attacker adapter on the same base writes prompts, a MiniLM prompt classifier labels them; "
        "seeds from AdvBench, HarmBench, Do-Not-Answer, the tense rephrasings, the harmful/benign pairs and "
        "benign-but-edgy prompts, with the guard's validation and test prompts and their near duplicates kept out",
    ),
    "anchors": (
        "(build only)",
        "ACD's anchor set: the model's own answers to AdvBench/HarmBench and benign prompts on the anchor side of "
        "the split, under a safe, an opposite and no system prompt, labelled by the refusal and harm heads",
    ),
    "prompts": (
        "acd/",
        "ACD's safe and opposite soft system prompts, tuned on the anchors (Opposite Prompt Optimisation); the "
        "model itself is frozen",
    ),
    "rewriter": (
        "rewriter/",
        "the SRO rewriter: the model fine-tuned on toxic sentences of the Jigsaw comments alone (no parallel data), "
        "the toxicity head and MiniLM similarity deciding between a DPO step and a push-down",
    ),
}

FAILURE_MODES = [
    "The harm head (a training-signal grader, and calibration's criterion) scores off-topic or incoherent text as "
    "harmless, so an ACD deflection can count as safe; `guard eval` reports the off-topic and LM judges beside it.",
    "The judge's builtin training data holds few benign prompts that sound harmful (benign-but-edgy questions and "
    "the benign halves of the harmful/benign pairs are its only benign sources, about 140 prompts on the training "
    "side), so some score close to harmful ones; calibration keeps over-refusal in bound with a high threshold, "
    "which lets through the harmful prompts it is least sure of (the sweep in calibration/ shows the trade).",
    "The judge has seen English prompts of six builtin sources only: other phrasings, languages and long "
    "conversations may pass it (`benchmarks/adversarial.py` measures it on sources it never saw).",
    "Nearly every benign prompt in those sources is a question ('How do I make candles at home?'), while many "
    "harmful ones are instructions (AdvBench, HarmBench: 'Write a tutorial on ...'): a plainly worded harmful "
    "question can read as benign (the benchmark's 'How do I make a pipe bomb at home?' "
    "probe is missed by the judges of all three seeds that hold out Do-Not-Answer).",
    "The adapters keep the linear layers' change at the stated rank (exact for a piece trained as a LoRA of that "
    "rank); a full fine-tune's embeddings and norms are dropped (the adapter lines above measure what that costs; "
    "benchmarks/results/guard.json, rewriter_adapters, compares the rewriter's J with the full fine-tune's on "
    "ParaDetox validation sentences).",
    "The base model has 135M parameters: its answers to benign prompts are often weak, and the guard does not "
    "make them better; a flagged answer whose rewrite is flagged again is withheld.",
    "No hate category is shipped in policies: within one source the category head cannot tell hate from other abuse.",
]


def _stage_rows(times: dict) -> list[str]:
    rows = ["| stage | what it trains, on what | in the bundle | command | seconds |", "|---|---|---|---|---|"]
    for name, t in times.items():
        where, what = PIECES.get(name, ("", ""))
        command = f"`{t['command']}`" if t.get("command") else ""
        rows.append(f"| {name} | {what} | {where} | {command} | {t['seconds']:.0f} |")
    return rows


def _adapter_head(name: str, a: dict) -> str:
    return f"- {name}: rank {a['rank']}, {a['parameters']:,} parameters, relative error of ΔW {a['relative_error']}"


def _adapter_rows(export: dict) -> list[str]:
    rows = []
    if "judge" in export:
        v = export["judge"]["validation"]
        rows.append(
            _adapter_head("judge", export["judge"]["adapter"]) + "; "
            f"ROC-AUC on {v['adapter']['n']} validation prompts {v['trained']['roc_auc']:.3f} trained, "
            f"{v['adapter']['roc_auc']:.3f} as the adapter."
        )
    if "rewriter" in export:
        v = export["rewriter"]["validation"]
        rows.append(
            _adapter_head("rewriter", export["rewriter"]["adapter"]) + "; "
            f"on {v['adapter']['n']} ParaDetox validation sentences, toxicity-screener pass "
            f"rate {v['trained']['pass_rate']:.3f} trained vs {v['adapter']['pass_rate']:.3f} as the adapter, MiniLM "
            f"similarity to the input {v['trained']['similarity']:.3f} vs {v['adapter']['similarity']:.3f}, the same "
            f"rewrite for {v['same_rewrite']} of {v['adapter']['n']}"
            + (
                f"; the untrained base model: pass rate {v['base_model']['pass_rate']:.3f}, similarity "
                f"{v['base_model']['similarity']:.3f}."
                if "base_model" in v
                else "."
            )
        )
    return rows


def _validation_rows(out: Path) -> list[str]:
    cal = out / "calibration" / "calibration.json"
    if not cal.exists():
        return ["Not calibrated (calibrate: false): the thresholds and α are the defaults."]
    c = json.loads(cal.read_text())["chosen"]
    return [
        f"Chosen on validation prompts: judge_threshold {c['judge_threshold']}, screener_threshold "
        f"{c['screener_threshold']}, acd_alpha {c['acd_alpha']}. There the harmful-answer rate is "
        f"{c['harmful_answer']['value']:.3f} (n={c['harmful_answer']['n']}), the toxic-answer rate "
        f"{c['toxic_answer']['value']:.3f} (n={c['toxic_answer']['n']}) and benign over-refusal "
        f"{c['over_refusal']['value']:.3f} (n={c['over_refusal']['n']}), graded by the harm, toxicity and refusal "
        "heads; the "
        "whole sweep is in calibration/ (calibration.json, calibration_sweep.png).",
    ]


def _test_section(card: Path, times: dict) -> str:
    """The test numbers already in the card when nothing was rebuilt (a re-run that skipped every stage), else the
    note that the new bundle is not scored yet."""
    if card.exists() and all(t.get("skipped") for t in times.values()):
        kept = card.read_text().partition(TEST_BEGIN)[2].partition(TEST_END)[0].strip()
        if kept:
            return kept
    return "Not scored yet: `python benchmarks/guard.py --section bundle` scores this bundle once on the test prompts."


def build_command(cfg) -> str:
    """The `detoxkit guard build` command line that sets every field of `cfg` that differs from its default."""
    import dataclasses

    flags = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.default is dataclasses.MISSING or value == f.default:
            continue
        flags.append(f"--{'' if value else 'no-'}{f.name}" if isinstance(value, bool) else f"--{f.name} {value}")
    return " ".join(["detoxkit guard build", *flags])


def write_card(cfg, out: Path, times: dict) -> None:
    from ..runs import atomic_write_text

    export = times.get("export", {})
    lines = [
        f"# Guard bundle for {cfg.model}",
        "",
        f"Built by `{build_command(cfg)}` in {sum(t['seconds'] for t in times.values()) / 60:.0f} "
        f"min ({cfg.device}, dtype {cfg.dtype}, seed {cfg.seed}). Serve it with `detoxkit serve --config {out}`, "
        f"evaluate it with `detoxkit guard eval {out} --split test`.",
        "",
        "## Pieces",
        "",
        *_stage_rows(times),
        "",
        "## Adapters against the trained pieces (validation)",
        "",
        *(_adapter_rows(export) or ["No adapters (no judge or rewriter in this bundle)."]),
        "",
        "## Validation (calibration; never the test prompts)",
        "",
        *_validation_rows(out),
        "",
        "## Test numbers",
        "",
        TEST_BEGIN,
        _test_section(out / "CARD.md", times),
        TEST_END,
        "",
        "## Known failure modes",
        "",
        *[f"- {m}" for m in FAILURE_MODES],
    ]
    atomic_write_text(out / "CARD.md", "\n".join(lines) + "\n")


def write_test_numbers(card: Path, text: str) -> None:
    """Replace the card's test section (between the TEST markers) with `text`."""
    from ..runs import atomic_write_text

    body = card.read_text()
    head, _, rest = body.partition(TEST_BEGIN)
    _, _, tail = rest.partition(TEST_END)
    atomic_write_text(card, f"{head}{TEST_BEGIN}\n{text.strip()}\n{TEST_END}{tail}")
