"""A small classifier head on frozen sentence embeddings, saved as one safetensors file.

The head's hyper-parameters and provenance travel in the safetensors metadata header, so a head file is
self-describing and loading it never unpickles anything.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).parent / "weights"  # the packaged heads and their model cards


class EmbeddingHead(nn.Module):
    """(n, in_dim) embeddings -> (n,) logits. hidden_size=0 gives logistic regression."""

    def __init__(self, in_dim: int, hidden_size: int = 256, dropout: float = 0.1):
        super().__init__()
        self.in_dim, self.hidden_size, self.dropout = in_dim, hidden_size, dropout
        if hidden_size:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_size, 1)
            )
        else:
            self.net = nn.Linear(in_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def save_head(path: str | Path, head: EmbeddingHead, meta: dict) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"in_dim": head.in_dim, "hidden_size": head.hidden_size, "dropout": head.dropout, **meta}
    tmp = path.with_name(f".{path.name}.tmp")  # write, then rename: a crash never leaves half a head
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()},
        str(tmp),
        metadata={"detoxkit": json.dumps(full)},
    )
    from ..runs import _public

    _public(tmp)
    tmp.replace(path)


def read_head_file(path: str | Path, what: str, required: str) -> tuple[dict, dict]:
    """(metadata, tensors) of a detoxkit head file (safetensors, never a pickle); `required`: a metadata key the
    kind of head (`what`) must have."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from ..errors import DetoxkitError

    path = Path(path)
    if not path.exists():
        raise DetoxkitError(f"{path}: {what} file not found")
    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {}).get("detoxkit") or "{}")
    if required not in meta:
        raise DetoxkitError(f"{path}: not a detoxkit {what} (no {required!r} in its 'detoxkit' metadata)")
    return meta, load_file(str(path))


def load_head(path: str | Path) -> tuple[EmbeddingHead, dict]:
    meta, state = read_head_file(path, "scorer head", "in_dim")
    head = EmbeddingHead(meta["in_dim"], meta["hidden_size"], meta["dropout"])
    head.load_state_dict(state)
    return head.eval(), meta


class EmbeddingHeadScorer:
    """Mixin for scorers = sentence embedder + :class:`EmbeddingHead` (the head file names its embedder)."""

    default_head: Path
    pairs = False  # True: the head reads (prompt, response) pair features

    def __init__(self, head: str | None = None, embedder=None, device: str = "cpu"):
        from ..lm.embedder import load_embedder

        self.head, self.meta = load_head(head or self.default_head)
        self.embedder = embedder or load_embedder(self.meta.get("embedder", "all-minilm-l6-v2"), device)
        self.version = self.meta.get("version", "0")
        self.threshold = float(self.meta.get("threshold", 0.5))

    def features(self, texts: list[str], prompts: list[str] | None):
        pooling = self.meta.get("pooling", "last")
        if self.pairs:
            return pair_features(
                self.embedder, list(prompts) if prompts is not None else [""] * len(texts), list(texts), pooling
            )
        return self.embedder.encode(list(texts), pooling=pooling)

    def score_batch(self, texts, prompts):
        x = self.features(texts, prompts)
        with torch.inference_mode():
            return torch.sigmoid(self.head(x)).tolist()


def pair_features(embedder, prompts: list[str], responses: list[str], pooling: str = "last") -> torch.Tensor:
    """[refusal_rule(r), cos(e(p), e(r)), log-length(r), e(r)]: (n, d+3).

    A few dense signals beat the full pair (e(p), e(r), e(p)·e(r)) on PyRIT's small human-labelled sets (grouped
    cross-validation; the heads' model cards in weights/ have the numbers): the rule says
    "it refuses", the cosine says "it engages with this request" (PyRIT counts off-topic answers as refusals),
    the response embedding says what it talks about.
    """
    from .rules import refusal_rule

    p, r_last = embedder.encode(prompts), embedder.encode(responses)
    r = r_last if pooling == "last" else embedder.encode(responses, pooling=pooling)
    rule = torch.tensor([[1.0 if refusal_rule(t) else 0.0] for t in responses])
    cos = (p * r_last).sum(-1, keepdim=True)  # sentence similarity: last-layer embeddings
    length = torch.tensor([[math.log1p(len(t)) / 8.0] for t in responses])
    return torch.cat([rule, cos, length, r], dim=-1)
