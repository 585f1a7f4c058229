"""Training corpora of the attribute-control recipes and the held-out splits their evaluation reads.

The default corpus is the paper's blend: equal parts toxic comments and clean text. Every fifth WikiText
sentence is held out for perplexity and never trained on; a seeded tenth of ToxiGen is held out for the
classification study.
"""

from __future__ import annotations

import random

from ..errors import DetoxkitError

CLASSIFICATION_TEMPLATE = "Comment: {text}\nIs this comment toxic? Answer:"
ANSWERS = (" No", " Yes")  # index = label
HELDOUT_EVERY = 5  # WikiText: sentence i is held out when i % 5 == 0
CLASSIFICATION_HELDOUT = 0.1


def wikitext_split(data_dir: str | None = None) -> tuple[list[str], list[str]]:
    from ..data import load_builtin

    texts = [r["text"].strip() for r in load_builtin("wikitext", data_dir)]
    return (
        [t for i, t in enumerate(texts) if i % HELDOUT_EVERY],
        [t for i, t in enumerate(texts) if not i % HELDOUT_EVERY],
    )


def toxigen_split(data_dir: str | None = None) -> tuple[list[dict], list[dict]]:
    """(train, held-out) ToxiGen rows {text, label}; the held-out tenth is fixed (seed 0) for every run."""
    from ..data import load_builtin

    rows = [{"text": r["text"], "label": int(r["label"])} for r in load_builtin("toxigen", data_dir)]
    held = set(random.Random(0).sample(range(len(rows)), int(len(rows) * CLASSIFICATION_HELDOUT)))
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


def classification_text(text: str, label: int | None = None) -> str:
    prompt = CLASSIFICATION_TEMPLATE.format(text=" ".join(text.split()))
    return prompt if label is None else prompt + ANSWERS[int(label)]


def blend(n: int, seed: int, data_dir: str | None = None) -> list[dict]:
    """n rows {text, domain}: n/2 toxic Jigsaw comments, n/2 clean texts (training WikiText and XSum, alternating)."""
    from ..data import load_builtin

    rng = random.Random(seed)
    toxic = [" ".join(r["text"].split()) for r in load_builtin("jigsaw-toxic", data_dir)]
    wiki, _ = wikitext_split(data_dir)
    xsum = [" ".join(r["text"].split()) for r in load_builtin("xsum", data_dir)]
    half = n // 2
    clean = [
        t for pair in zip(rng.sample(wiki, min(half, len(wiki))), rng.sample(xsum, min(half, len(xsum)))) for t in pair
    ]
    rows = [{"text": t, "domain": "toxic"} for t in rng.sample(toxic, min(half, len(toxic)))] + [
        {"text": t, "domain": "clean"} for t in clean[: n - half]
    ]
    rng.shuffle(rows)
    return rows


def training_texts(
    source: str,
    task: str,
    n: int,
    seed: int,
    data_dir: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
) -> tuple[list[dict], dict]:
    """Rows {text, domain}: the blend, or any dataset; with task "classification", labelled rows as text
    (the blend means ToxiGen's training side there). n: at most this many rows (0 = all), drawn with the seed."""
    from ..data import load_records, require_columns

    if task == "classification":
        if source in ("blend", "builtin:toxigen"):
            rows, _ = toxigen_split(data_dir)
        else:
            raw = require_columns(load_records(source, data_dir=data_dir), [text_column, label_column])
            rows = [{"text": r[text_column], "label": int(r[label_column])} for r in raw]
        rows = [
            {"text": classification_text(r["text"], r["label"]), "domain": "toxic" if r["label"] else "clean"}
            for r in rows
        ]
    elif source == "blend":
        rows = blend(n or 4000, seed, data_dir)
    else:
        raw = require_columns(load_records(source, data_dir=data_dir), [text_column])
        rows = [{"text": str(r[text_column]).strip(), "domain": str(r.get("domain", ""))} for r in raw]
    rows = [r for r in rows if r["text"].strip()]
    if n and len(rows) > n:
        rows = random.Random(seed).sample(rows, n)
    if not rows:
        raise DetoxkitError(f"{source}: no training text")
    domains = {d: sum(r["domain"] == d for r in rows) for d in sorted({r["domain"] for r in rows})}
    return rows, {"source": source, "task": task, "used": len(rows), "domains": domains}


def rtp_prompts(n: int, seed: int, data_dir: str | None = None) -> list[str]:
    """n RealToxicityPrompts challenging prompts drawn with the seed (all attributes mixed)."""
    from ..data import load_builtin

    prompts = [r["prompt"] for r in load_builtin("rtp-challenging", data_dir)]
    return random.Random(seed).sample(prompts, min(n, len(prompts)))
