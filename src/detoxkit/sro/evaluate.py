"""`detoxkit sro eval`: ParaDetox metrics of rewriters on the held-out split, one table row per method."""

from __future__ import annotations

import random
import time
from pathlib import Path

from ..config import Recipe, parse_named
from .config import SroEvalConfig

SCORER_SETS = {  # --scorers -> (training-signal toxicity, independent toxicity)
    "both": ("toxicity", "profanity"),
    "training-signal": ("toxicity", None),
    "independent": (None, "profanity"),
}
TRAINING_SIGNAL = ["toxicity", "similarity"]  # SRO's screener: the toxicity head and the MiniLM cosine gate
INDEPENDENT = ["profanity", "chrF"]


SCORER_NOTES = {
    "both": "STA: toxicity head < 0.5, SIM: MiniLM cosine (SRO's training signal); independent: STA from the "
    "profanity word model, SIM = chrF against the input; FL: fluency proxy; offline proxies of the official metrics.",
    "training-signal": "STA: toxicity head < 0.5; SIM: MiniLM cosine (SRO's training signal); FL: fluency proxy.",
    "independent": "STA: profanity word model < 0.5; SIM: chrF against the input; FL: fluency proxy "
    "(none shares weights with SRO's training signal).",
}


class DetoxEvaluator:
    """STA/SIM/FL/J (+ BLEU/chrF) with the toolkit's offline scorers.

    scorers: "both" (the default) reports the training-signal figures (toxicity head, MiniLM cosine: what SRO's
    screener optimises) and, under "independent", the same metrics from the profanity word model and chrF
    against the input; "training-signal" or "independent" keeps one set.

    The fluency threshold is calibrated on `n_calibration` human rewrites from the ParaDetox *training* rows (never the
    held-out pool), under a model name of its own so the default calibration cache is left alone.
    """

    def __init__(
        self,
        train_rows: list[dict],
        fluency_model: str = "smollm2-135m-instruct",
        seed: int = 0,
        n_calibration: int = 500,
        scorers: str = "both",
    ):
        from ..eval.detox import FluencyProxy
        from ..lm.embedder import load_embedder
        from ..lm.load import load_model_and_tokenizer
        from ..scorers import get_scorer

        signal, independent = SCORER_SETS[scorers]
        self.toxicity = get_scorer(signal) if signal else None
        self.independent_toxicity = get_scorer(independent) if independent else None
        self.embedder = load_embedder() if signal else None
        lm, tok = load_model_and_tokenizer(fluency_model)
        refs = [ref for r in train_rows for ref in r["references"]]
        refs = random.Random(seed).sample(refs, min(n_calibration, len(refs)))
        self.fluency = FluencyProxy.calibrate(lm, tok, f"{fluency_model}-paradetox-train-split", references=refs)

    def __call__(self, inputs: list[str], outputs: list[str], references: list[list[str]] | None) -> dict:
        from ..eval.detox import detox_metrics

        return detox_metrics(
            inputs,
            outputs,
            self.toxicity,
            self.embedder,
            self.fluency,
            references,
            independent_toxicity=self.independent_toxicity,
        )


def markdown_table(results: dict, note: str) -> str:
    def ci(m):
        return f"{m['value']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"

    both = any("independent" in m for m in results.values())
    extra = " STA (indep.) | SIM chrF (indep.) | J (indep.) |" if both else ""
    lines = [
        note,
        "",
        f"| method | n | STA | SIM | FL | J | BLEU | chrF |{extra}",
        "|---|---|---|---|---|---|---|---|" + "---|" * (3 if both else 0),
    ]
    for name, m in results.items():
        bleu = f"{m['BLEU']:.1f}" if "BLEU" in m else "n/a"
        chrf = f"{m['chrF']:.1f}" if "chrF" in m else "n/a"
        row = (
            f"| {name} | {m['n']} | {ci(m['STA'])} | {ci(m['SIM'])} | {ci(m['FL'])} | {ci(m['J'])} | {bleu} | {chrf} |"
        )
        if both:
            ind = m["independent"]
            row += f" {ci(ind['STA'])} | {ci(ind['SIM'])} | {ci(ind['J'])} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def human_metrics(evaluator, inputs: list[str], refs: list[list[str]]) -> tuple[list[str], dict]:
    """The first human rewrite as the output; BLEU/chrF against the others, where a sentence has two or more."""
    import sacrebleu

    outputs = [r[0] for r in refs]
    others = [r[1:] or None for r in refs]
    metrics = evaluator(inputs, outputs, None)
    with_refs = [i for i, o in enumerate(others) if o]
    if with_refs:
        width = max(len(others[i]) for i in with_refs)
        ref_cols = [[others[i][k] if k < len(others[i]) else others[i][0] for i in with_refs] for k in range(width)]
        hyp = [outputs[i] for i in with_refs]
        metrics.update(
            BLEU=sacrebleu.corpus_bleu(hyp, ref_cols).score,
            chrF=sacrebleu.corpus_chrf(hyp, ref_cols).score,
            bleu_note=f"against the other human rewrites, on the {len(with_refs)} sentences that have two or more",
        )
    return outputs, metrics


def evaluate(cfg, evaluator: DetoxEvaluator | None = None) -> dict:
    """Rewrite the held-out sentences with every method and score them; writes output_dir files."""
    from ..runs import append_jsonl, atomic_write_text, prepare_output_dir, write_json
    from .data import paradetox_split
    from .rewrite import Rewriter

    methods = parse_named(cfg.methods, "methods", "SOURCE: a rewriter folder, a model, or human")
    train_rows, validation_rows, test_rows = paradetox_split(cfg.data_dir, cfg.split_size, cfg.split_seed)
    if cfg.split == "validation":
        test_rows = validation_rows
    if cfg.max_eval_samples:
        test_rows = test_rows[: cfg.max_eval_samples]
    out = prepare_output_dir(cfg)
    (out / "outputs.jsonl").unlink(missing_ok=True)
    evaluator = evaluator or DetoxEvaluator(train_rows, cfg.fluency_model, scorers=cfg.scorers)
    inputs = [r["text"] for r in test_rows]
    refs = [r["references"] for r in test_rows]
    results, timings = {}, {}
    for name, source in methods:
        t0 = time.perf_counter()
        if source == "human":
            outputs, metrics = human_metrics(evaluator, inputs, refs)
        else:
            rewriter = Rewriter.from_pretrained(source, cfg.device, cfg.max_new_tokens, cfg.dtype)
            outputs = rewriter.rewrite(inputs, batch_size=cfg.batch_size, show_progress=True)
            metrics = evaluator(inputs, outputs, refs)
        timings[name] = time.perf_counter() - t0
        per = metrics.pop("per_sentence")
        append_jsonl(
            out / "outputs.jsonl",
            (
                {"method": name, "input": x, "output": y, "toxicity": t, "J": j}
                for x, y, t, j in zip(inputs, outputs, per["toxicity"], per["J"])
            ),
        )
        results[name] = {**metrics, "source": source}
        print(
            f"sro eval: {name}: J {metrics['J']['value']:.3f} STA {metrics['STA']['value']:.3f} "
            f"SIM {metrics['SIM']['value']:.3f} FL {metrics['FL']['value']:.3f}",
            flush=True,
        )
    pool_size = len(validation_rows) if cfg.split == "validation" else cfg.split_size
    note = (
        f"Held-out ParaDetox {cfg.split} split: seed {cfg.split_seed}, {pool_size} sentences"
        + (f", first {len(inputs)} scored (a subset)" if len(inputs) < pool_size else "")
        + ". "
        + SCORER_NOTES[cfg.scorers]
    )
    report = {
        "split": {
            "name": cfg.split,
            "seed": cfg.split_seed,
            "size": pool_size,
            "scored": len(inputs),
            "pool": "ParaDetox groups held out by the toxicity scorer (seed 42, 10%)",
        },
        "note": note,
        "scorers": {
            "set": cfg.scorers,
            "training_signal": TRAINING_SIGNAL if cfg.scorers != "independent" else [],
            "independent": INDEPENDENT if cfg.scorers != "training-signal" else [],
        },
        "methods": results,
        "seconds": timings,
    }
    write_json(out / "metrics.json", report)
    atomic_write_text(out / "table.md", markdown_table(results, note))
    return report


def summary(cfg, report: dict) -> str:
    best = max(report["methods"].items(), key=lambda kv: kv[1]["J"]["value"])
    return (
        f"sro eval: {len(report['methods'])} methods on {report['split']['scored']} held-out sentences; "
        f"best J {best[1]['J']['value']:.3f} ({best[0]}); table in {Path(cfg.output_dir) / 'table.md'}"
    )


EVAL = Recipe(SroEvalConfig, evaluate, summary)
