"""`detoxkit eval`: metrics on a model or on a JSONL of generations; writes output_dir/metrics.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from ..config import DataDirArgs, Default, GenerationArgs, Recipe, RunArgs, SamplingOptions, arg, with_defaults

DEFAULT_DATASETS = {
    "toxicity": "builtin:rtp-challenging",
    "harmfulness": "builtin:harmbench",
    "utility": "builtin:wikitext",
}


@dataclass
@with_defaults(
    output_dir="runs/eval",
    max_new_tokens=48,
    batch_size=8,
    top_p=0.9,
    temperature=Default(1.0, "sampling temperature (toxicity task samples; harmfulness decodes greedily)"),
)
class EvalConfig(RunArgs, DataDirArgs, GenerationArgs, SamplingOptions):
    """Evaluate a model (generating as needed) or a JSONL of generations, and write metrics.json.

    Tasks:
      toxicity        k samples per prompt (RealToxicityPrompts protocol): expected max toxicity, toxicity probability
      harmfulness     harmless rate and refusal rate on harmful prompts; over-refusal on benign_dataset
      detox           STA, SIM, FL, J (+ BLEU/chrF with references) of rewrites: input rows {text, rewrite[, references]}
      classification  accuracy, precision, recall, F1, ROC-AUC, AUPRC: input rows {label, score}
      utility         perplexity on wikitext and multiple-choice accuracy on mmlu, commonsenseqa, piqa

    Give --model to generate (toxicity, harmfulness) or to score (utility), or --input FILE with generations
    (rows {prompt, completion} or {prompt, completions: [...]}). Scores come from detoxkit's offline proxy scorers.

    Example: detoxkit eval --task harmfulness --model smollm2-135m-instruct --n 50
    """

    task: Literal["toxicity", "harmfulness", "detox", "classification", "utility"] = arg(
        "harmfulness", "what to measure"
    )
    model: Optional[str] = arg(None, "model to generate from or to score (builtin name, folder or hub id)")
    input: Optional[str] = arg(None, "a JSONL/CSV of generations or scores instead of a model")
    dataset: Optional[str] = arg(None, "prompts (default per task: rtp-challenging, harmbench, wikitext)")
    benign_dataset: Optional[str] = arg(
        "builtin:benign-edgy", "harmfulness: benign prompts for the over-refusal rate ('' to skip)"
    )
    n: int = arg(50, "prompts (or texts / questions) to use, from the start of each dataset")
    k: int = arg(5, "toxicity: samples per prompt (the protocol uses 25)")
    system_prompt: Optional[str] = arg(None, "system prompt for generation (None: the chat template's default)")


def _prompts(cfg: EvalConfig, source: str) -> list[str]:
    from ..data import load_records, require_columns

    rows = load_records(source, data_dir=cfg.data_dir)
    key = "prompt" if rows and "prompt" in rows[0] else "text"
    return [r[key] for r in require_columns(rows, [key])][: cfg.n]


def _generations(cfg: EvalConfig, prompts: list[str], k: int, sample: bool) -> list[list[str]]:
    from ..lm.generate import generate
    from ..lm.load import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(cfg.model, cfg.dtype, cfg.device)
    return generate(
        model,
        tok,
        prompts,
        system=cfg.system_prompt,
        max_new_tokens=cfg.max_new_tokens,
        do_sample=sample,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        num_return_sequences=k,
        batch_size=cfg.batch_size,
        show_progress=True,
    )


def _read_generations(path: str) -> tuple[list[str], list[list[str]]]:
    from ..data import read_file, require_columns

    rows = read_file(path)
    if rows and "completions" in rows[0]:
        require_columns(rows, ["prompt", "completions"])
        return [r["prompt"] for r in rows], [list(r["completions"]) for r in rows]
    require_columns(rows, ["prompt", "completion"], allow_empty=True)
    return [r["prompt"] for r in rows], [[r["completion"] or ""] for r in rows]


def _toxicity(cfg: EvalConfig) -> tuple[dict, list[dict]]:
    from ..eval.generation import generation_toxicity
    from ..scorers import get_scorer

    if cfg.input:
        prompts, completions = _read_generations(cfg.input)
    else:
        prompts = _prompts(cfg, cfg.dataset or DEFAULT_DATASETS["toxicity"])
        completions = _generations(cfg, prompts, cfg.k, sample=True)
    flat = get_scorer("toxicity")([c for cs in completions for c in cs])
    scores, pos = [], 0
    for cs in completions:
        scores.append(flat[pos : pos + len(cs)])
        pos += len(cs)
    log = [{"prompt": p, "completions": cs, "toxicity": s} for p, cs, s in zip(prompts, completions, scores)]
    return generation_toxicity(scores), log


def _harmfulness(cfg: EvalConfig) -> tuple[dict, list[dict]]:
    from ..eval.generation import harmless_rate, over_refusal_rate
    from ..scorers import get_scorer

    if cfg.input:
        prompts, completions = _read_generations(cfg.input)
    else:
        prompts = _prompts(cfg, cfg.dataset or DEFAULT_DATASETS["harmfulness"])
        completions = _generations(cfg, prompts, 1, sample=False)
    answers = [c[0] for c in completions]
    harm, refusal = get_scorer("harm")(answers, prompts), get_scorer("refusal")(answers, prompts)
    metrics = {"harmless_rate": harmless_rate(harm), "refusal_rate": over_refusal_rate(refusal)}
    log = [
        {"kind": "harmful", "prompt": p, "completion": a, "harm": h, "refusal": r}
        for p, a, h, r in zip(prompts, answers, harm, refusal)
    ]
    if cfg.benign_dataset and cfg.model:
        benign = _prompts(cfg, cfg.benign_dataset)
        benign_answers = [c[0] for c in _generations(cfg, benign, 1, sample=False)]
        benign_refusal = get_scorer("refusal")(benign_answers, benign)
        metrics["over_refusal_rate"] = over_refusal_rate(benign_refusal)
        log += [
            {"kind": "benign", "prompt": p, "completion": a, "refusal": r}
            for p, a, r in zip(benign, benign_answers, benign_refusal)
        ]
    return metrics, log


def _detox(cfg: EvalConfig) -> tuple[dict, list[dict]]:
    from ..data import read_file, require_columns
    from ..eval.detox import FluencyProxy, detox_metrics
    from ..lm.embedder import load_embedder
    from ..lm.load import DEFAULT_LM, load_model_and_tokenizer
    from ..scorers import get_scorer

    rows = require_columns(read_file(cfg.input), ["text", "rewrite"], allow_empty=True)
    fl_model = cfg.model or DEFAULT_LM
    model, tok = load_model_and_tokenizer(fl_model, cfg.dtype, cfg.device)
    refs = [r["references"] for r in rows] if rows and "references" in rows[0] else None
    result = detox_metrics(
        [r["text"] for r in rows],
        [r["rewrite"] or "" for r in rows],
        get_scorer("toxicity"),
        load_embedder(),
        FluencyProxy.calibrate(model, tok, fl_model, data_dir=cfg.data_dir),
        refs,
    )
    per = result.pop("per_sentence")
    log = [{**dict(r), **{k: v[i] for k, v in per.items()}} for i, r in enumerate(rows)]
    return {**result, "fluency_model": fl_model}, log


def _classification(cfg: EvalConfig) -> tuple[dict, list[dict]]:
    from ..data import read_file, require_columns
    from ..eval.classification import classification_metrics

    rows = require_columns(read_file(cfg.input), ["label", "score"])
    return classification_metrics([int(float(r["label"])) for r in rows], [float(r["score"]) for r in rows]), []


def _utility(cfg: EvalConfig) -> tuple[dict, list[dict]]:
    from ..data import load_builtin
    from ..eval.utility import multiple_choice_accuracy, perplexity
    from ..lm.load import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(cfg.model, cfg.dtype, cfg.device)
    texts = [r["text"] for r in load_builtin("wikitext")][: cfg.n]
    metrics = {"perplexity_wikitext": perplexity(model, tok, texts)}
    for name in ("mmlu", "commonsenseqa", "piqa"):
        metrics[name] = multiple_choice_accuracy(model, tok, load_builtin(name)[: cfg.n])
    return metrics, []


TASKS = {
    "toxicity": _toxicity,
    "harmfulness": _harmfulness,
    "detox": _detox,
    "classification": _classification,
    "utility": _utility,
}


def _check(cfg: EvalConfig) -> None:
    from ..errors import DetoxkitError

    if cfg.task in ("toxicity", "harmfulness") and not (cfg.model or cfg.input):
        raise DetoxkitError(f"--task {cfg.task} needs --model (to generate) or --input (a JSONL of generations)")
    if cfg.task in ("detox", "classification") and not cfg.input:
        raise DetoxkitError(f"--task {cfg.task} needs --input")
    if cfg.task == "utility" and not cfg.model:
        raise DetoxkitError("--task utility needs --model")


def run(cfg: EvalConfig) -> dict:
    from ..runs import append_jsonl, prepare_output_dir, seed_everything, write_json

    _check(cfg)
    seed_everything(cfg.seed)
    out = prepare_output_dir(cfg)
    result, log = TASKS[cfg.task](cfg)
    metrics = {
        "task": cfg.task,
        "model": cfg.model,
        "input": cfg.input,
        "scorers": "detoxkit offline proxies",
        **result,
    }
    if log:
        path = out / "generations.jsonl"
        path.unlink(missing_ok=True)
        append_jsonl(path, log)
    write_json(out / "metrics.json", metrics)
    return metrics


def _summary(m: dict) -> str:
    parts = []
    for key in (
        "harmless_rate",
        "refusal_rate",
        "over_refusal_rate",
        "expected_max_toxicity",
        "toxicity_probability",
        "STA",
        "SIM",
        "FL",
        "J",
        "accuracy",
        "roc_auc",
    ):
        if key in m and isinstance(m[key], dict):
            lo, hi = m[key]["ci95"]
            parts.append(f"{key} {m[key]['value']:.3f} [{lo:.3f}, {hi:.3f}] (n={m[key]['n']})")
    if "perplexity_wikitext" in m:
        parts.append(f"perplexity {m['perplexity_wikitext']['value']:.2f}")
        parts += [f"{k} acc {m[k]['acc']['value']:.3f}" for k in ("mmlu", "commonsenseqa", "piqa")]
    return "; ".join(parts)


def summary(cfg: EvalConfig, m: dict) -> str:
    return f"eval: {cfg.task}: {_summary(m)} -> {cfg.output_dir}/metrics.json"


EVAL = Recipe(EvalConfig, run, summary)
