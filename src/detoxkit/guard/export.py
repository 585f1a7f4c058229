"""The bundle's trained pieces, exported small: the judge and the rewriter as rank-r PEFT LoRA adapters (fp16),
the soft prompts copied, and what the truncation costs measured on validation data.

Why measure here: the adapters are a rank-r factorisation of what the recipes trained (a rank-16 LoRA judge, a
full fine-tune rewriter), so the bundle is only as good as that approximation. The judge is compared by ROC-AUC on
the guard's validation prompts, the rewriter by the toxicity screener's pass rate and MiniLM similarity of its
rewrites of ParaDetox validation sentences: the trained piece and its adapter, side by side.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def judge_validation_auc(judge, n: int, seed: int) -> dict:
    """ROC-AUC of a judge on the guard's validation prompts (harmful vs benign-but-edgy), with n per kind."""
    from sklearn.metrics import roc_auc_score

    from .evalsets import builtin_set

    rows = builtin_set("harmful", "validation", n, seed) + builtin_set("benign", "validation", n, seed)
    scores = judge.predict_proba([r.prompt for r in rows])
    labels = [int(r.kind == "harmful") for r in rows]
    return {"roc_auc": round(float(roc_auc_score(labels, scores)), 4), "n": len(rows)}


def export_judge(trained: Path, dst: Path, rank: int, n: int, seed: int, dtype: str, device: str) -> dict:
    from ..adversarial.judge import Judge

    full = Judge.from_pretrained(trained, dtype, device)
    stats = full.save_adapter(dst, rank)
    before = judge_validation_auc(full, n, seed)
    del full
    after = judge_validation_auc(Judge.from_pretrained(dst, dtype, device), n, seed)
    return {"adapter": stats, "validation": {"trained": before, "adapter": after}}


def rewriter_validation(rewriter, n: int) -> dict:
    """Rewrites of n ParaDetox validation sentences: the share the toxicity screener passes (< 0.5) and the mean
    MiniLM cosine to the input (the SRO follower's two criteria)."""
    from ..eval.detox import similarity
    from ..lm.embedder import load_embedder
    from ..scorers import get_scorer
    from ..sro.data import paradetox_split

    _, validation, _ = paradetox_split()
    texts = [r["text"] for r in validation[:n]]
    out = rewriter.rewrite(texts)
    tox = get_scorer("toxicity")(out)
    sim = similarity(load_embedder(), texts, out)
    return {
        "pass_rate": round(sum(t < 0.5 for t in tox) / len(out), 4),
        "similarity": round(sum(sim) / len(sim), 4),
        "n": len(out),
        "rewrites": out,
    }


def export_rewriter(trained: Path, dst: Path, rank: int, n: int, dtype: str, device: str) -> dict:
    import json

    from ..sro.rewrite import Rewriter, save_rewriter_adapter

    stats = save_rewriter_adapter(trained, dst, rank)
    before = rewriter_validation(Rewriter.from_pretrained(str(trained), device, dtype=dtype), n)
    after = rewriter_validation(Rewriter.from_pretrained(str(dst), device, dtype=dtype), n)
    # the untrained base with the same instruction: what the training added, against what the adapter kept
    base = json.loads((Path(trained) / "rewriter.json").read_text())["base_model"]
    untrained = rewriter_validation(Rewriter.from_pretrained(base, device, dtype=dtype), n)
    same = sum(a == b for a, b in zip(before.pop("rewrites"), after.pop("rewrites")))
    untrained.pop("rewrites")
    validation = {"trained": before, "adapter": after, "base_model": untrained, "same_rewrite": same}
    return {"adapter": stats, "validation": validation}


def copy_prompts(src: Path, dst: Path) -> dict:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("safe_prompt.safetensors", "adv_prompt.safetensors"):
        shutil.copyfile(src / name, dst / name)
    return {"files": ["safe_prompt.safetensors", "adv_prompt.safetensors"]}
