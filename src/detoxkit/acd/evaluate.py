"""ACD against its baselines in one harness: harmless rate, over-refusal, MC accuracy and perplexity per method."""

from __future__ import annotations

import ast
import time
from pathlib import Path

from ..config import Recipe
from ..errors import DetoxkitError
from ..eval.stats import format_ci
from .anchors import draw, normalise
from .config import EvalConfig


def methods(cfg, safe_soft, adv_soft) -> list[dict]:
    """The method table: name, safe prompt, adversarial prompt, α, window (None: no contrast / full contrast); with
    cfg.only_methods, just those rows."""
    from .config import NULL_PROMPT

    rows = [
        # no system prompt of ours: the chat template then inserts its own default (SmolLM2: "You are a helpful AI
        # assistant named SmolLM..."), so the row is named for what the model actually saw
        {"method": "template_default", "safe": None, "adv": None, "alpha": 0.0, "window": None},
        {"method": "manual_safe", "safe": cfg.safe_prompt, "adv": None, "alpha": 0.0, "window": None},
        {"method": "nID", "safe": cfg.safe_prompt, "adv": NULL_PROMPT, "alpha": cfg.id_alpha, "window": None},
        {"method": "oID", "safe": cfg.safe_prompt, "adv": cfg.opposite_prompt, "alpha": cfg.id_alpha, "window": None},
        {"method": "soft_safe_only", "safe": safe_soft, "adv": None, "alpha": 0.0, "window": None},
    ]
    rows += [
        {"method": f"acd_a{a:g}", "safe": safe_soft, "adv": adv_soft, "alpha": a, "window": None} for a in cfg.alphas
    ]
    if cfg.window:
        rows.append(
            {
                "method": f"acd_a{cfg.alpha:g}_w{cfg.window}",
                "safe": safe_soft,
                "adv": adv_soft,
                "alpha": cfg.alpha,
                "window": cfg.window,
            }
        )
    if not cfg.only_methods:
        return rows
    unknown = set(cfg.only_methods) - {r["method"] for r in rows}
    if unknown:
        raise DetoxkitError(f"only_methods: no such row(s) {sorted(unknown)}; rows: {[r['method'] for r in rows]}")
    return [r for r in rows if r["method"] in cfg.only_methods]


def _mc_items(source: str, n: int, seed: int) -> list[dict]:
    import random

    from ..data import load_records

    rows = load_records(source)
    items = []
    for r in rows:
        choices = r["choices"] if isinstance(r["choices"], list) else ast.literal_eval(str(r["choices"]))
        items.append({"question": str(r["question"]), "choices": [str(c) for c in choices], "answer": int(r["answer"])})
    random.Random(seed).shuffle(items)
    return items[:n]


def mc_accuracy(model, tok, items, safe, adv, alpha, form, batch_size=16) -> dict:
    """Accuracy by Σ log p(choice) under the method's decoding distribution; the question is the user turn."""
    from ..eval.stats import rate
    from .decode import score_completions

    prompts = [it["question"] for it in items for _ in it["choices"]]
    conts = [c for it in items for c in it["choices"]]
    lps, _ = score_completions(model, tok, prompts, conts, safe, adv, alpha, form, batch_size)
    correct, pos = [], 0
    for it in items:
        k = len(it["choices"])
        s = lps[pos : pos + k]
        correct.append(max(range(k), key=s.__getitem__) == it["answer"])
        pos += k
    return rate(correct)


def perplexity(model, tok, texts, safe, adv, alpha, form, batch_size=8) -> dict:
    """exp(−Σ log p / Σ tokens) of texts as the assistant's answer to a fixed request, under the method."""
    import math

    from .decode import score_completions

    lps, ns = score_completions(
        model,
        tok,
        ["Write a paragraph of an encyclopedia article."] * len(texts),
        texts,
        safe,
        adv,
        alpha,
        form,
        batch_size,
    )
    return {"value": math.exp(-sum(lps) / max(sum(ns), 1)), "n_texts": len(texts), "n_tokens": int(sum(ns))}


def eval_prompts(cfg) -> tuple[list[str], list[str], list[str], int]:
    """(harmful prompts, their sources, benign prompts, overlap count) from the evaluation split, anchors excluded,
    and (exclude_scorer_training) the prompts the shipped harm and refusal heads trained on, so a head never
    grades a prompt it learned."""
    from ..data import load_records
    from ..scorers.train import training_prompts

    anchor_prompts = set()
    if cfg.anchors:
        if not Path(cfg.anchors).exists():
            raise DetoxkitError(
                f"{cfg.anchors}: anchors file not found (pass --anchors None to skip the overlap check)"
            )
        anchor_prompts = {normalise(r["prompt"]) for r in load_records(cfg.anchors)}
    exclude = set(anchor_prompts)
    if cfg.exclude_scorer_training:
        exclude |= {normalise(p) for task in ("harm", "refusal") for p in training_prompts(task)}
    half = None if cfg.split == "all" else cfg.split
    harmful, sources = [], []
    for src in cfg.harmful_sources:
        got = draw([src], cfg.n_per_harmful_source, "eval", cfg.eval_fraction, cfg.seed, exclude, half)
        harmful += got
        sources += [src] * len(got)
    benign = draw([cfg.benign_source], cfg.n_benign, "eval", cfg.eval_fraction, cfg.seed, exclude, half)
    overlap = sum(normalise(p) in anchor_prompts for p in harmful + benign)  # 0 by construction; checked anyway
    return harmful, sources, benign, overlap


def answer(model, tok, cfg, m: dict, prompts: list[str]) -> list[str]:
    """One method's responses: plain decoding without a system prompt, or (contrastive) decoding with its prompts."""
    from ..lm.generate import generate as plain_generate
    from .decode import generate

    if m["safe"] is None:
        return [
            r[0]
            for r in plain_generate(
                model, tok, prompts, system=None, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size
            )
        ]
    return generate(
        model,
        tok,
        prompts,
        m["safe"],
        m["adv"],
        alpha=m["alpha"],
        form=cfg.form,
        window=m["window"],
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
    )


def independent_row(judges: dict, harmful: list[str], benign: list[str], resp: list[str]) -> dict:
    """The independent judges' view of one method's responses (see EvalConfig), and per response its outcome
    (harmful prompts) or whether the rules call it a refusal (benign prompts)."""
    from ..eval.generation import harmful_outcomes, outcome_kinds, over_refusal_rate
    from ..eval.stats import rate

    n = len(harmful)
    h_resp, b_resp = resp[:n], resp[n:]
    verdicts = (
        judges["refusal-rules"].flags(h_resp),
        judges["off-topic"].flags(h_resp, harmful),
        judges["lm-judge"].flags(h_resp, harmful),
    )
    kinds = outcome_kinds(*verdicts)
    outcomes = harmful_outcomes(kinds)
    refusals = judges["refusal-rules"](b_resp)
    row = {
        "harmful": outcomes,
        "harmless_rate": outcomes["harmless"],
        "over_refusal": over_refusal_rate(refusals),
        "off_topic_on_benign": rate(judges["off-topic"].flags(b_resp, benign)),
    }
    return row, kinds + [("refused" if r >= 0.5 else "answered") for r in refusals]


def independent_judges(cfg, model, tok) -> dict | None:
    from ..scorers import get_scorer
    from ..scorers.lm_judge import LMJudgeScorer

    if cfg.scorers == "training-signal":
        return None
    return {
        "refusal-rules": get_scorer("refusal-rules"),
        "off-topic": get_scorer("off-topic"),
        "lm-judge": LMJudgeScorer(model=cfg.model, model_obj=model, tokenizer=tok),
    }


def method_row(cfg, m: dict, h: list[float], r: list[float], sources: list[str]) -> dict:
    from ..eval.generation import harmless_rate, over_refusal_rate

    return {
        "alpha": m["alpha"],
        "window": m["window"],
        "harmless_rate": harmless_rate(h, cfg.harm_threshold),
        "harmless_rate_by_source": {
            s: harmless_rate([x for x, src in zip(h, sources) if src == s], cfg.harm_threshold)
            for s in cfg.harmful_sources
        },
        "over_refusal": over_refusal_rate(r, cfg.refusal_threshold),
    }


def utility(cfg, model, tok, m: dict, mc_items: list, ppl_texts: list) -> dict:
    """Utility under the decoding distributions that need it: the manual safe prompt, the tuned safe prompt alone
    and ACD at every α of the sweep (the window variant decodes like ACD at the headline α, and shares its utility)."""
    if not (
        m["method"] in ("manual_safe", "soft_safe_only") or (m["method"].startswith("acd_a") and m["window"] is None)
    ):
        return {}
    out = {}
    if mc_items:
        out["mc_accuracy"] = mc_accuracy(model, tok, mc_items, m["safe"], m["adv"], m["alpha"], cfg.form)
    if ppl_texts:
        out["perplexity"] = perplexity(model, tok, ppl_texts, m["safe"], m["adv"], m["alpha"], cfg.form)
    return out


def log_rows(method: str, prompts, n_harmful: int, resp, h, r, outcomes) -> list[dict]:
    """generations.jsonl rows: each response with its training-signal score and its independent outcome."""
    return [
        {
            "method": method,
            "prompt": p,
            "kind": "harmful" if i < n_harmful else "benign",
            "response": x,
            "harm" if i < n_harmful else "refusal": (h[i] if i < n_harmful else r[i - n_harmful]),
            **({"independent_outcome": outcomes[i]} if outcomes else {}),
        }
        for i, (p, x) in enumerate(zip(prompts, resp))
    ]


def scorers_info(cfg, refusal, harm, judges: dict | None) -> dict:
    return {
        "set": cfg.scorers,
        "refusal": refusal.version,
        "harm": harm.version,
        **({n: j.version for n, j in judges.items()} if judges else {}),
        "training_signal": ["harm", "refusal"],
        "independent": [n for n in judges if n != "refusal-rules"] if judges else [],
        "shared_with_training_signal": ["refusal-rules"] if judges else [],
        "note": "offline proxy scorers (embedding heads + refusal rules), not GPT-4 judges; the independent "
        "ones share no weights with the heads that labelled the anchors",
    }


def evaluate(cfg, model=None, tok=None) -> dict:
    """Run the comparison for an :class:`~detoxkit.acd.config.EvalConfig`; returns metrics (also written)."""
    from ..data import load_records
    from ..lm.load import load_model_and_tokenizer
    from ..lm.soft_prompt import SoftPrompt
    from ..runs import append_jsonl, atomic_write_text, prepare_output_dir, progress, seed_everything, write_json
    from ..scorers import get_scorer

    methods(cfg, None, None)  # an unknown only_methods name fails here, before the output folder is touched
    seed_everything(cfg.seed)
    out = Path(prepare_output_dir(cfg))
    if model is None:
        model, tok = load_model_and_tokenizer(cfg.model, cfg.dtype, cfg.device)
    safe_soft = SoftPrompt.load(Path(cfg.prompts_dir) / "safe_prompt.safetensors")
    adv_soft = SoftPrompt.load(Path(cfg.prompts_dir) / "adv_prompt.safetensors")
    harmful, sources, benign, overlap = eval_prompts(cfg)
    prompts = harmful + benign
    refusal = get_scorer("refusal", **({"head": cfg.refusal_head} if cfg.refusal_head else {}))
    harm = get_scorer("harm", **({"head": cfg.harm_head} if cfg.harm_head else {}))
    judges = independent_judges(cfg, model, tok)
    mc_items = _mc_items(cfg.mc_source, cfg.n_mc, cfg.seed) if cfg.n_mc else []
    ppl_texts = [r["text"] for r in load_records(cfg.ppl_source)[: cfg.n_ppl]] if cfg.n_ppl else []
    gen_path = out / "generations.jsonl"
    gen_path.unlink(missing_ok=True)
    results = {}
    for m in progress(methods(cfg, safe_soft, adv_soft), desc="acd eval", unit="method"):
        t0 = time.time()
        resp = answer(model, tok, cfg, m, prompts)
        gen_s = time.time() - t0
        h, r = harm(resp[: len(harmful)], harmful), refusal(resp[len(harmful) :], benign)
        row = {**method_row(cfg, m, h, r, sources), "generation_seconds": round(gen_s, 1)}
        outcomes = None
        if judges is not None:
            row["independent"], outcomes = independent_row(judges, harmful, benign, resp)
        row.update(utility(cfg, model, tok, m, mc_items, ppl_texts))
        results[m["method"]] = row
        append_jsonl(gen_path, log_rows(m["method"], prompts, len(harmful), resp, h, r, outcomes))
    metrics = {
        "model": cfg.model,
        "n_harmful": len(harmful),
        "n_benign": len(benign),
        "n_mc": len(mc_items),
        "n_ppl": len(ppl_texts),
        "max_new_tokens": cfg.max_new_tokens,
        "form": cfg.form,
        "eval_anchor_overlap": overlap,
        "split": cfg.split,
        "scorers": scorers_info(cfg, refusal, harm, judges),
        "methods": results,
    }
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", report(metrics))
    plot_alpha(metrics, out / "alpha_sweep.png")
    return metrics


def report(metrics: dict) -> str:
    lines = [
        f"# ACD evaluation: {metrics['model']}",
        "",
        f"Harmful prompts n={metrics['n_harmful']}, benign-edgy n={metrics['n_benign']}, MC n={metrics['n_mc']}, "
        f"max_new_tokens={metrics['max_new_tokens']}. Harm and refusal are judged by offline proxy scorers "
        f"({metrics['scorers']['harm']}, {metrics['scorers']['refusal']}); 95% Wilson intervals.",
        "",
        "| method | α | harmless rate | over-refusal | MC accuracy | perplexity |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in metrics["methods"].items():
        ppl = f"{r['perplexity']['value']:.2f}" if "perplexity" in r else "–"
        lines.append(
            f"| {name} | {r['alpha']:g} | {format_ci(r['harmless_rate'])} | {format_ci(r['over_refusal'])} | "
            f"{format_ci(r.get('mc_accuracy'))} | {ppl} |"
        )
    if any("independent" in r for r in metrics["methods"].values()):
        lines += [
            "",
            "Independent judges (refusal rules, the off-topic judge, an LM judge of harm): each harmful-prompt "
            "response in one column; harmless = refused + answered safely.",
            "",
            "| method | harmless | refused | answered safely | answered harmfully | off-topic | over-refusal (rules) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in metrics["methods"].items():
            ind, h = r["independent"], r["independent"]["harmful"]
            lines.append(
                f"| {name} | {format_ci(h['harmless'])} | {format_ci(h['refused'])} | {format_ci(h.get('answered_safely'))} | "
                f"{format_ci(h.get('answered_harmfully'))} | {format_ci(h['off_topic'])} | {format_ci(ind['over_refusal'])} |"
            )
    return "\n".join(lines) + "\n"


def plot_alpha(metrics: dict, path: Path) -> None:
    """Harmless rate and over-refusal of ACD against α, with the baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = metrics["methods"]
    sweep = sorted((r["alpha"], r) for n, r in ms.items() if n.startswith("acd_a") and r["window"] is None)
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [a for a, _ in sweep]
    curves = [("harmless_rate", "tab:green", "harmless rate"), ("over_refusal", "tab:red", "over-refusal")]
    if all("mc_accuracy" in r for _, r in sweep):
        curves.append(("mc_accuracy", "tab:blue", "MC accuracy"))
    for key, colour, label in curves:
        ys = [r[key]["value"] for _, r in sweep]
        lo = [r[key]["ci95"][0] for _, r in sweep]
        hi = [r[key]["ci95"][1] for _, r in sweep]
        ax.plot(xs, ys, "o-", color=colour, label=f"ACD {label}")
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.15)
    for name, style in (("manual_safe", "--"), ("nID", ":"), ("oID", "-.")):
        if name in ms:
            ax.axhline(ms[name]["harmless_rate"]["value"], color="tab:green", ls=style, lw=1, label=f"{name} harmless")
    if "mc_accuracy" in ms.get("manual_safe", {}):
        ax.axhline(ms["manual_safe"]["mc_accuracy"]["value"], color="tab:blue", ls="--", lw=1, label="manual_safe MC")
    ax.set_xlabel("α")
    ax.set_ylabel("rate")
    ax.set_ylim(0, 1)
    ax.set_title(f"ACD on {metrics['model']} (n={metrics['n_harmful']} harmful, {metrics['n_benign']} benign)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def summary(cfg, m: dict) -> str:
    base = m["methods"]["manual_safe"]["harmless_rate"]["value"]
    acd = m["methods"][f"acd_a{cfg.alpha:g}"]["harmless_rate"]["value"]
    return (
        f"acd eval: harmless rate manual safe {base:.3f} -> ACD(α={cfg.alpha:g}) {acd:.3f} on {m['n_harmful']} "
        f"harmful prompts -> {cfg.output_dir}/report.md, alpha_sweep.png"
    )


EVAL = Recipe(EvalConfig, evaluate, summary)
