"""The one near-duplicate check between what trains and what evaluates: exact after normalisation, or close in
sentence-embedding space (MiniLM cosine at or above a threshold). Every recipe and benchmark that keeps a training
set away from an evaluation set uses it, and reports its counts."""

from __future__ import annotations

import re


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: "How do I X?" and "how do i x" are the same text."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", text.lower())).strip()


def overlap_check(candidates: list[str], references: list[str], threshold: float = 0.9, embedder=None) -> dict:
    """Exact (normalised) and near-duplicate (embedding cosine >= threshold) overlap of candidates with references.

    Returns {"exact": [...], "near": [(candidate, reference, cosine)], "keep": [candidates with neither]}.
    threshold > 1 checks exact overlap only (no embedder is loaded)."""
    ref_norm = {normalise(p) for p in references}
    exact = [c for c in candidates if normalise(c) in ref_norm]
    rest = [c for c in candidates if normalise(c) not in ref_norm]
    near = []
    if rest and references and threshold <= 1:
        from ..lm.embedder import load_embedder

        emb = embedder or load_embedder()
        sims = emb.encode(rest) @ emb.encode(list(references)).T
        best, idx = sims.max(-1)
        near = [(c, references[int(j)], float(s)) for c, s, j in zip(rest, best, idx) if float(s) >= threshold]
    near_set = {c for c, _, _ in near}
    return {"exact": exact, "near": near, "keep": [c for c in rest if c not in near_set]}


def overlap_report(name: str, against: str, check: dict, threshold: float) -> dict:
    """The counts a result file records for one checked pair of sets (an overlap_check result)."""
    return {
        "pair": [name, against],
        "threshold": threshold,
        "checked": len(check["exact"]) + len(check["near"]) + len(check["keep"]),
        "exact": len(check["exact"]),
        "near": len(check["near"]),
        "removed": len(check["exact"]) + len(check["near"]),
        "examples": [list(x) for x in check["near"][:3]],
    }
