"""Where the loop's prompts come from: several builtin sources, split by request hash, whole sources held out.

Every builtin harmful or benign prompt set is one *source* (the harmful/benign pairs are one source with both
labels, as are their role-play framings). A prompt's request hash (below) puts it in the ordinary hold-out (30%), the
validation split (10%, for thresholds) or the training side (60%); a source named in ``holdout_sources`` gives
nothing to the training side at all (no seed, no oracle example, no attacker example, no control prompt): its
prompts are the never-trained-on test.
The shared near-duplicate check (``data.overlap``) removes from every evaluation split the prompts that have a
training-side neighbour, and records the counts. Draws from the training side are balanced per source.

A prompt that wraps another source's request (the role-play framings wrap the pairs' requests) is split and checked
by its request, not its whole text: otherwise a request could be trained on bare and tested framed (the hash of
the framed text puts it anywhere, and at cosine 0.9 a long framing hides the request), while two different requests
in one framing would read as near duplicates of each other.
"""

from __future__ import annotations

import hashlib
import json
import random

HOLDOUT_PERCENT = 30
VALIDATION_PERCENT = 10
SOURCES = (
    "advbench",
    "harmbench",
    "donotanswer",
    "tense-rephrasings",
    "harmful-benign-pairs",
    "roleplay-framings",
    "benign-edgy",
)
# known but not in the default mix: hold them out (--holdout_sources) for benign rows no judge has seen, or train on
# them (--sources); PIQA's and CommonsenseQA's questions in plain wording
OPTIONAL_SOURCES = ("plain-howto", "plain-questions")
BENIGN_SOURCES = ("benign-edgy", "plain-howto", "plain-questions")


def _source_texts(name: str) -> list[tuple[str, int, str, str | None]]:
    """(text, label, request, category) of one builtin source; label 1 = problematic; request = the request the text
    wraps (the text itself, but for the role-play framings)."""
    from ..data import load_builtin
    from ..errors import DetoxkitError

    if name not in SOURCES + OPTIONAL_SOURCES:
        raise DetoxkitError(f"unknown prompt source {name!r} (one of {', '.join(SOURCES + OPTIONAL_SOURCES)})")
    rows = load_builtin(name)
    if name == "harmful-benign-pairs":
        return [(r[k], y, r[k], r.get("category")) for y, k in ((1, "harmful"), (0, "benign")) for r in rows]
    if name == "roleplay-framings":
        return [(r["prompt"], r["label"], r["request"], r.get("category")) for r in rows]
    return [(r["prompt"], 0 if name in BENIGN_SOURCES else 1, r["prompt"], r.get("category")) for r in rows]


def load_source_records(sources=SOURCES) -> list[dict]:
    """{text, label, source, request, category} for every prompt of the named builtin sources; a text seen before
    (after normalisation) keeps its first source."""
    from ..data.overlap import normalise

    seen, out = set(), []
    for name in sources:
        for text, label, request, category in _source_texts(name):
            key = normalise(text)
            if text.strip() and key not in seen:
                seen.add(key)
                out.append({"text": text, "label": label, "source": name, "request": request, "category": category})
    return out


def request_of(record: dict) -> str:
    """What a record is split and leak-checked by: the request it wraps, or its text."""
    return record.get("request") or record["text"]


def bucket(text: str) -> int:
    """A stable 0..99 by text hash: the same split in every run, seed and process."""
    return int(hashlib.md5(text.encode()).hexdigest(), 16) % 100


def in_holdout(text: str) -> bool:
    return bucket(text) < HOLDOUT_PERCENT


def split_of(record: dict, holdout_sources) -> str:
    if record["source"] in holdout_sources:
        return "heldout_source"
    b = bucket(request_of(record))  # a request falls on one side in every source that carries it
    return "holdout" if b < HOLDOUT_PERCENT else "validation" if b < HOLDOUT_PERCENT + VALIDATION_PERCENT else "train"


class CachedEmbedder:
    """Encodes each distinct text once (the split checks compare the same training side several times)."""

    def __init__(self, embedder):
        self.embedder, self.cache = embedder, {}

    def encode(self, texts):
        import torch

        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, self.embedder.encode(missing)))
        return torch.stack([self.cache[t] for t in texts])


def reserve(recs: list[dict], reserved: list[str], embedder, leak_threshold: float) -> dict | None:
    """Records equal to (after normalisation) or near (cosine >= leak_threshold) a reserved prompt move to split
    "reserved": no part of the run, training or evaluation, sees them. Returns the overlap report (None: none)."""
    from ..data.overlap import overlap_check, overlap_report

    if not reserved:
        return None
    check = overlap_check([request_of(r) for r in recs], reserved, leak_threshold, embedder)
    keep = set(check["keep"])
    for r in recs:
        if request_of(r) not in keep:
            r["split"] = "reserved"
    return overlap_report("all sources", "reserved prompts (kept out)", check, leak_threshold)


def source_splits(
    records: list[dict], holdout_sources=(), embedder=None, leak_threshold: float = 2.0, reserved=()
) -> dict:
    """Records split by request hash (request_of) and source, evaluation splits cleaned of training-side near
    duplicates.

    Returns {"records": [{text, label, source, split}], "overlaps": [counts], "heldout_sources": [...]} plus
    the text lists harmful_/benign_ × train/holdout/validation and benign_edgy_train. The hold-out is checked
    against training + validation, validation and the held-out sources against training (exact after
    normalisation, or embedder cosine >= leak_threshold; above 1: exact only). `reserved` prompts (another
    evaluation's validation and test sets) and their near duplicates are kept out of every split."""
    from ..data.overlap import overlap_check, overlap_report
    from ..errors import DetoxkitError

    unknown = sorted(set(holdout_sources) - {r["source"] for r in records})
    if unknown:
        raise DetoxkitError(f"held-out source(s) {unknown} are not among the loaded sources")
    recs = [{**r, "split": split_of(r, holdout_sources)} for r in records]
    embedder = CachedEmbedder(embedder) if embedder is not None and leak_threshold <= 1 else embedder
    kept_out = reserve(recs, list(reserved), embedder, leak_threshold)
    requests = {s: [request_of(r) for r in recs if r["split"] == s] for s in ("train", "validation")}
    against = {
        "holdout": (requests["train"] + requests["validation"], "train + validation"),
        "validation": (requests["train"], "train"),
        "heldout_source": (requests["train"], "train"),
    }
    overlaps, removed = [], set()
    for split, (refs, refs_name) in against.items():
        for label, kind in ((1, "harmful"), (0, "benign")):
            cands = [request_of(r) for r in recs if r["split"] == split and r["label"] == label]
            check = overlap_check(cands, refs, leak_threshold, embedder)
            overlaps.append(overlap_report(f"{kind}_{split}", refs_name, check, leak_threshold))
            removed |= {(split, t) for t in cands} - {(split, t) for t in check["keep"]}
    recs = [r for r in recs if (r["split"], request_of(r)) not in removed and r["split"] != "reserved"]
    overlaps += [kept_out] if kept_out else []
    out = {"records": recs, "overlaps": overlaps, "heldout_sources": sorted(holdout_sources)}
    for split in ("train", "holdout", "validation"):
        for label, kind in ((1, "harmful"), (0, "benign")):
            out[f"{kind}_{split}"] = [r["text"] for r in recs if r["split"] == split and r["label"] == label]
    out["benign_edgy_train"] = [r["text"] for r in recs if r["split"] == "train" and r["source"] == "benign-edgy"]
    return out


def by_source(records: list[dict], split: str, label: int) -> dict[str, list[str]]:
    """{source: texts} of one split and label, in record order."""
    out: dict[str, list[str]] = {}
    for r in records:
        if r["split"] == split and r["label"] == label:
            out.setdefault(r["source"], []).append(r["text"])
    return out


class SourcePool:
    """Draws without replacement, round-robin over sources (each shuffled once), so any draw of n holds every
    source n // k or n // k + 1 times while it lasts; the next draw starts at the source after the last one."""

    def __init__(self, texts_by_source: dict[str, list[str]], rng: random.Random, exclude=()):
        skip = set(exclude)
        self.pools = {}
        for s in sorted(texts_by_source):
            pool = [t for t in texts_by_source[s] if t not in skip]
            rng.shuffle(pool)
            self.pools[s] = pool
        self.order, self.cursor = sorted(self.pools), 0

    def take(self, n: int) -> list[tuple[str, str]]:
        """Up to n (text, source) pairs."""
        out = []
        while len(out) < n and any(self.pools.values()):
            s = self.order[self.cursor % len(self.order)]
            self.cursor += 1
            if self.pools[s]:
                out.append((self.pools[s].pop(), s))
        return out


def seed_data(splits: dict, n_problematic: int, n_benign: int, seed: int, rounds: int = 0, per_round: int = 0):
    """Seed rows {prompt, label, kind, source, round}: round 0 holds n_problematic + n_benign prompts, every
    round 1..rounds per_round more (half problematic); all from the training side, balanced per source."""
    rng = random.Random(seed)
    recs = splits["records"]
    pools = {y: SourcePool(by_source(recs, "train", y), rng) for y in (1, 0)}
    later = [(r, per_round - per_round // 2, per_round // 2) for r in range(1, rounds + 1)] if per_round else []
    rows = []
    for rnd, n_pos, n_neg in [(0, n_problematic, n_benign), *later]:
        for y, n in ((1, n_pos), (0, n_neg)):
            kind = "problematic" if y else "benign"
            rows += [{"prompt": t, "label": y, "kind": kind, "source": s, "round": rnd} for t, s in pools[y].take(n)]
    return rows


def oracle_training(splits: dict, per_source: int, seed: int) -> tuple[list[str], list[str]]:
    """(positives, negatives) for the prompt-classifier oracle: training-side prompts, at most per_source from
    each source and label (0 = all), so one large source does not define harm."""
    rng = random.Random(seed)
    out = []
    for y in (1, 0):
        texts = []
        for _, pool in sorted(by_source(splits["records"], "train", y).items()):
            pool = list(pool)
            rng.shuffle(pool)
            texts += pool[:per_source] if per_source > 0 else pool
        out.append(texts)
    return out[0], out[1]


def splits_summary(splits: dict) -> dict:
    """What splits.json records: sizes per split and source, the held-out sources, the overlap counts, and a
    fingerprint of which prompt went where (seed-free: two runs with the same one split the data alike)."""
    table: dict[str, dict[str, dict[str, int]]] = {}
    for r in splits["records"]:
        cell = table.setdefault(r["split"], {}).setdefault(r["source"], {"problematic": 0, "benign": 0})
        cell["problematic" if r["label"] else "benign"] += 1
    sizes = {k: len(v) for k, v in splits.items() if isinstance(v, list) and k not in ("records", "overlaps")}
    sizes.pop("heldout_sources", None)
    return {
        "sizes": sizes,
        "by_split_and_source": table,
        "heldout_sources": splits["heldout_sources"],
        "never_trained_on": "every prompt of the held-out sources (no seed, oracle, attacker or control example)",
        "overlaps": splits["overlaps"],
        "fingerprint": hashlib.sha256(
            json.dumps(sorted((r["source"], r["split"], r["label"], r["text"]) for r in splits["records"])).encode()
        ).hexdigest(),
    }
