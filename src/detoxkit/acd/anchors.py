"""The OPO anchor set: the target model's own responses, labelled and split into D_HR, D_HA and D_S.

The paper's 600 anchors (ChatGPT-written instructions, Llama-2-uncensored responses) were not released; this
rebuilds the set from builtin harmful and benign instructions and the target model, as METHODS.md §2.3 suggests.
Which prompts may be anchors is decided by a hash of the normalised prompt (``split_of``), shared with
`acd eval`, so evaluation prompts never become anchors; near-duplicates (AdvBench and HarmBench paraphrase each
other) are removed by embedding similarity.
"""

from __future__ import annotations

import hashlib
import random

from ..config import Recipe
from ..data.overlap import normalise, overlap_check
from ..errors import DetoxkitError
from .config import AnchorsConfig

SYSTEMS = ("safe", "opposite", "null")


def split_of(prompt: str, eval_fraction: float) -> str:
    """ "eval" or "anchor": a stable hash of the normalised prompt, so every command agrees on the split."""
    h = int(hashlib.sha1(normalise(prompt).encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "eval" if h < eval_fraction else "anchor"


def eval_half(prompt: str) -> str:
    """ "validation" or "test": which half of the evaluation side a prompt is on (a second, independent hash).
    α and other choices read validation; reported numbers are scored on test, once."""
    h = int(hashlib.sha1(("half:" + normalise(prompt)).encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if h < 0.5 else "test"


def source_prompts(source: str) -> list[str]:
    """Instructions from a dataset: column 'prompt', or 'benign' (the benign side of a harmful/benign pairs set)."""
    from ..data import load_records

    rows = load_records(source)
    if not rows:
        raise DetoxkitError(f"{source}: no rows")
    col = "prompt" if "prompt" in rows[0] else "benign" if "benign" in rows[0] else None
    if col is None:
        raise DetoxkitError(f"{source}: needs a 'prompt' (or 'benign') column; has {', '.join(rows[0])}")
    return [str(r[col]).strip() for r in rows if str(r[col]).strip()]


def draw(
    sources: list[str],
    n: int,
    want: str,
    eval_fraction: float,
    seed: int,
    exclude: set[str] = frozenset(),
    half: str | None = None,
) -> list[str]:
    """n distinct prompts in split `want` from the sources (round robin over sources, shuffled by seed); with
    half ("validation" or "test"), only that half of the evaluation side."""
    rng = random.Random(seed)
    pools = []
    for src in sources:
        pool = [
            p
            for p in dict.fromkeys(source_prompts(src))
            if split_of(p, eval_fraction) == want
            and normalise(p) not in exclude
            and (half is None or eval_half(p) == half)
        ]
        rng.shuffle(pool)
        pools.append(pool)
    out, seen = [], set()
    while len(out) < n and any(pools):
        for pool in pools:
            while pool:
                p = pool.pop()
                if normalise(p) not in seen:
                    seen.add(normalise(p))
                    out.append(p)
                    break
            if len(out) >= n:
                break
    return out


def label(kind: str, refused: bool, harmful: bool) -> str:
    """The anchor split of one response.

    harmful instruction: refusal and harmless -> D_HR; compliance and harmful -> D_HA; anything else is ambiguous
    under the proxy scorers and dropped. benign instruction: a non-refusal -> D_S; a refusal is dropped (it would
    teach the safe prompt to over-refuse; the paper keeps every safe response [inferred: unstated]).
    """
    if kind == "harmful":
        if refused and not harmful:
            return "D_HR"
        if harmful and not refused:
            return "D_HA"
        return "dropped"
    return "dropped" if refused else "D_S"


def candidates(cfg) -> dict:
    """Harmful and benign anchor instructions from the anchor split, with near-duplicates of eval prompts dropped."""
    eval_prompts = [
        p for src in cfg.eval_sources for p in source_prompts(src) if split_of(p, cfg.eval_fraction) == "eval"
    ]
    # Draw extra candidates so that dropping near-duplicates still leaves n of each kind.
    harm_c = draw(cfg.harmful_sources, 2 * cfg.n_harmful, "anchor", cfg.eval_fraction, cfg.seed)
    ben_c = draw(cfg.benign_sources, 2 * cfg.n_benign, "anchor", cfg.eval_fraction, cfg.seed + 1)
    chk_h = overlap_check(harm_c, eval_prompts, cfg.near_duplicate_threshold)
    chk_b = overlap_check(ben_c, eval_prompts, cfg.near_duplicate_threshold)
    harmful, benign = chk_h["keep"][: cfg.n_harmful], chk_b["keep"][: cfg.n_benign]
    if not harmful or not benign:
        raise DetoxkitError("acd anchors: no harmful or no benign instruction left after the overlap check")
    return {"harmful": harmful, "benign": benign, "eval_prompts": eval_prompts, "checks": (chk_h, chk_b)}


def responses(model, tok, cfg, harmful: list[str], benign: list[str]) -> list[dict]:
    """The model's own answers to every instruction under the safe, opposite and null system prompts."""
    from ..lm.generate import generate
    from .config import NULL_PROMPT

    systems = {"safe": cfg.safe_prompt, "opposite": cfg.opposite_prompt, "null": NULL_PROMPT}
    prompts = harmful + benign
    kinds = ["harmful"] * len(harmful) + ["benign"] * len(benign)
    rows = []
    for sys_name, sys_text in systems.items():
        outs = generate(
            model,
            tok,
            prompts,
            system=sys_text,
            max_new_tokens=cfg.max_new_tokens,
            do_sample=True,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            num_return_sequences=cfg.samples_per_prompt,
            batch_size=cfg.batch_size,
            show_progress=True,
        )
        for p, k, resp in zip(prompts, kinds, outs):
            rows.extend({"prompt": p, "kind": k, "system": sys_name, "response": r} for r in resp)
    return rows


def label_rows(cfg, rows: list[dict]) -> dict:
    """Refusal and harm scores and the anchor split of every response (in place); the scorer versions."""
    from ..scorers import get_scorer

    refusal = get_scorer("refusal", **({"head": cfg.refusal_head} if cfg.refusal_head else {}))
    harm = get_scorer("harm", **({"head": cfg.harm_head} if cfg.harm_head else {}))
    texts, ps = [r["response"] for r in rows], [r["prompt"] for r in rows]
    for r, rs, hs in zip(rows, refusal(texts, ps), harm(texts, ps)):
        r["refusal"], r["harm"] = float(rs), float(hs)
        r["split"] = label(r["kind"], rs >= cfg.refusal_threshold, hs >= cfg.harm_threshold)
    return {"refusal": refusal.version, "harm": harm.version}


def overlap_report(cfg, c: dict) -> dict:
    chk_h, chk_b = c["checks"]
    eval_norm = {normalise(e) for e in c["eval_prompts"]}
    return {
        "eval_sources": cfg.eval_sources,
        "eval_fraction": cfg.eval_fraction,
        "eval_prompts": len(c["eval_prompts"]),
        "near_duplicate_threshold": cfg.near_duplicate_threshold,
        "candidates_exact_overlap": len(chk_h["exact"]) + len(chk_b["exact"]),
        "candidates_near_duplicates_dropped": len(chk_h["near"]) + len(chk_b["near"]),
        "near_duplicate_examples": (chk_h["near"] + chk_b["near"])[:5],
        "anchors_in_eval_split_after_filtering": sum(normalise(p) in eval_norm for p in c["harmful"] + c["benign"]),
    }


def build_anchors(cfg, model=None, tok=None) -> dict:
    """Run the anchor pipeline for an :class:`~detoxkit.acd.config.AnchorsConfig`; returns the meta dict."""
    from pathlib import Path

    from ..lm.load import load_model_and_tokenizer
    from ..runs import append_jsonl, prepare_output_dir, seed_everything, write_json

    seed_everything(cfg.seed)
    out = prepare_output_dir(cfg)
    if model is None:
        model, tok = load_model_and_tokenizer(cfg.model, cfg.dtype, cfg.device)
    c = candidates(cfg)
    rows = responses(model, tok, cfg, c["harmful"], c["benign"])
    scorers = label_rows(cfg, rows)
    path = Path(out) / "anchors.jsonl"
    path.unlink(missing_ok=True)
    append_jsonl(path, rows)
    splits = ("D_HR", "D_HA", "D_S")
    meta = {
        "model": cfg.model,
        "n_harmful": len(c["harmful"]),
        "n_benign": len(c["benign"]),
        "responses": len(rows),
        "counts": {s: sum(r["split"] == s for r in rows) for s in (*splits, "dropped")},
        "by_system": {
            sys: {s: sum(r["split"] == s and r["system"] == sys for r in rows) for s in splits} for sys in SYSTEMS
        },
        "scorers": scorers,
        "overlap_check": overlap_report(cfg, c),
    }
    write_json(Path(out) / "anchors_meta.json", meta)
    return meta


def summary(cfg, meta: dict) -> str:
    c, o = meta["counts"], meta["overlap_check"]
    return (
        f"acd anchors: {meta['responses']} responses -> D_HR {c['D_HR']}, D_HA {c['D_HA']}, D_S {c['D_S']} "
        f"(dropped {c['dropped']}); eval overlap: {o['candidates_exact_overlap']} exact, "
        f"{o['candidates_near_duplicates_dropped']} near-duplicates dropped -> {cfg.output_dir}/anchors.jsonl"
    )


ANCHORS = Recipe(AnchorsConfig, build_anchors, summary)
