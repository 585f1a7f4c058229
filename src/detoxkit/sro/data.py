"""The held-out ParaDetox evaluation split and the training inputs.

The official ParaDetox test set (671 sentences) is not public, so one is carved out of the shared file.
It is drawn from the groups the toxicity scorer held out when it was trained (configs/scorer_train.yaml:
seed 42, 10% of groups by a seeded hash), so STA is never measured on sentences its scorer learned.
Everything that trains or calibrates on ParaDetox (SFT, the fluency threshold) excludes that whole pool.
"""

from __future__ import annotations

import random
import re

# The toxicity scorer's group split (configs/scorer_train.yaml); the pool is its held-out side.
SCORER_SPLIT_SEED = 42
SCORER_EVAL_FRACTION = 0.1


def heldout_pool(n_rows: int) -> set[int]:
    """Indices of builtin:paradetox rows in the toxicity scorer's held-out groups."""
    from ..scorers.train import split_rows

    rows = [{"group": f"paradetox:{i}", "i": i} for i in range(n_rows)]
    _, held = split_rows(rows, SCORER_EVAL_FRACTION, SCORER_SPLIT_SEED)
    return {r["i"] for r in held}


def paradetox_split(
    data_dir: str | None = None, size: int = 670, seed: int = 0
) -> tuple[list[dict], list[dict], list[dict]]:
    """(train_rows, validation_rows, test_rows) of builtin:paradetox. test = `size` rows of the held-out pool in a
    seeded order; validation = the rest of the pool (curves, early stopping and recipe choices read it, never
    test); train = every row outside the pool. Rows are {text, references}."""
    from ..data import load_builtin
    from ..errors import DetoxkitError

    rows = list(load_builtin("paradetox", data_dir))
    pool = heldout_pool(len(rows))
    if size >= len(pool):
        raise DetoxkitError(
            f"split_size {size} leaves no validation sentences in the held-out pool ({len(pool)} sentences)"
        )
    test_idx = random.Random(seed).sample(sorted(pool), size)
    validation_idx = sorted(pool - set(test_idx))
    random.Random(seed + 1).shuffle(validation_idx)
    return (
        [r for i, r in enumerate(rows) if i not in pool],
        [rows[i] for i in validation_idx],
        [rows[i] for i in test_idx],
    )


def heldout_texts(data_dir: str | None = None) -> list[str]:
    """Every input sentence of ParaDetox's held-out pool (validation and test)."""
    _, validation, test = paradetox_split(data_dir)
    return [r["text"] for r in validation + test]


def sentences(text: str, min_words: int = 4, max_words: int = 40) -> list[str]:
    """The sentences of a comment (split at . ! ? and line breaks) that have min_words..max_words words."""
    parts = (p.strip() for p in re.split(r"(?<=[.!?])\s+|\n+", text))
    return [p for p in parts if min_words <= len(p.split()) <= max_words]


def toxic_sentences(texts: list[str], screener, threshold: float, wanted: int, seed: int) -> tuple[list[str], int]:
    """Distinct sentences of the texts that the screener flags (score >= threshold), in a seeded order; screening
    stops once `wanted` are found (0: screen all). Returns them and how many sentences were screened."""
    pool = list(dict.fromkeys(s for t in texts for s in sentences(t)))
    random.Random(seed).shuffle(pool)
    from ..runs import progress

    found, screened = [], 0
    for i in progress(range(0, len(pool), 512), desc="screening sentences", unit="batch"):
        chunk = pool[i : i + 512]
        found += [s for s, v in zip(chunk, screener(chunk)) if v >= threshold]
        screened += len(chunk)
        if wanted and len(found) >= wanted:
            break
    return found, screened


def training_rows(
    source: str,
    column: str,
    data_dir: str | None,
    tokenizer,
    max_input_tokens: int,
    max_samples: int,
    seed: int,
    with_references: bool = False,
    sentence_screener=None,
    screener_threshold: float = 0.5,
    leak_threshold: float = 2.0,
    embedder=None,
) -> tuple[list[dict], dict]:
    """Rows {text} (or {text, reference}, one per human rewrite, when with_references) whose text fits
    max_input_tokens, drawn with the seed; ParaDetox's held-out pool is always removed. Also a count report.

    With a sentence_screener, the inputs are the texts' sentences that it flags as toxic (see toxic_sentences).
    Inputs that duplicate a held-out ParaDetox input (data.overlap at leak_threshold) are dropped and counted."""
    from ..data import load_records, require_columns
    from ..data.overlap import overlap_check, overlap_report

    if source == "builtin:paradetox":
        rows = paradetox_split(data_dir)[0]
    else:
        rows = require_columns(
            load_records(source, data_dir=data_dir),
            [column] + (["references"] if with_references else []),
            allow_empty=True,
        )
    texts = [(str(r[column]).strip(), r) for r in rows if r[column] is not None and str(r[column]).strip()]
    report = {"rows": len(rows), "non_empty": len(texts)}
    if sentence_screener is not None:
        found, screened = toxic_sentences(
            [t for t, _ in texts], sentence_screener, screener_threshold, max_samples, seed
        )
        texts = [(s, {}) for s in found]
        report.update(sentences_screened=screened, toxic_sentences=len(found))
    if source != "builtin:paradetox":  # ParaDetox's own rows already exclude the whole held-out pool
        heldout = heldout_texts(data_dir)
        check = overlap_check([t for t, _ in texts], heldout, leak_threshold, embedder)
        keep = set(check["keep"])
        texts = [(t, r) for t, r in texts if t in keep]
        report["heldout_overlap"] = overlap_report(
            "training inputs", "paradetox validation+test", check, leak_threshold
        )
    kept = [(t, r) for t, r in texts if len(tokenizer(t, add_special_tokens=False)["input_ids"]) <= max_input_tokens]
    if with_references:
        out = [{"text": t, "reference": ref} for t, r in kept for ref in (r["references"] or []) if ref]
    else:
        out = [{"text": t} for t, _ in kept]
    if max_samples and len(out) > max_samples:
        out = random.Random(seed).sample(out, max_samples)
    return out, {**report, "within_max_input_tokens": len(kept), "used": len(out)}
