"""`detoxkit scorer train`: fit a scorer head on frozen sentence embeddings, under `accelerate launch`."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config import (
    CheckpointArgs,
    DataDirArgs,
    Default,
    OptimArgs,
    Recipe,
    ResumeArgs,
    RunArgs,
    arg,
    with_defaults,
)

TASK_DEFAULTS = {  # task -> (datasets, benchmark)
    "refusal": (["builtin:pyrit-refusal"], "none"),
    # PyRIT's objective set has only harmful requests; the pairs add benign requests answered helpfully (0)
    # beside harmful ones answered compliantly (1), so "helpful answer to a benign question" is not read as harm.
    "harm": (["builtin:pyrit-objective", "builtin:harmful-benign-pairs"], "builtin:pyrit-harm"),
}
TOXICITY_DATASETS = [
    "builtin:paradetox",  # toxic sentences (1) and their human rewrites (0), split by pair
    "builtin:jigsaw-toxic",  # toxic comments (1)
    "builtin:toxigen",  # implicit hate (1) vs neutral statements about the same groups (0)
    "builtin:davidson",  # hate/offensive tweets (1) vs neither (0)
    "builtin:wikitext=0",  # encyclopedic sentences (0)
]


@dataclass
@with_defaults(
    seed=42,
    output_dir="runs/scorer-toxicity",
    learning_rate=1e-3,
    weight_decay=0.01,
    per_device_train_batch_size=Default(256, "batch size per process"),
    max_steps=Default(-1, "stop after this many optimizer steps (-1: use num_train_epochs)"),
    save_steps=Default(200, "checkpoint every N steps"),
)
class ScorerTrainConfig(RunArgs, ResumeArgs, DataDirArgs, OptimArgs, CheckpointArgs):
    """Train a scorer head (an MLP on frozen MiniLM sentence embeddings) and write its model card.

    Data: each entry of `datasets` is `builtin:NAME`, a file, or a `datasets` name with `text` and
    `label` columns; `SOURCE=0` or `SOURCE=1` labels every row. `builtin:paradetox` contributes each
    toxic sentence (1) and its human rewrites (0), kept in the same split. ToxiGen-200 (the evaluation
    set) is removed from the training data. Embeddings are cached under $DETOXKIT_CACHE.

    Example: detoxkit scorer train --config configs/scorer_train.yaml
    Multi-process: accelerate launch --multi_gpu --num_processes 2 -m detoxkit.scorers.train --config ...
    (with no GPU the processes train on the CPU, joined by gloo)
    """

    task: Literal["toxicity", "refusal", "harm"] = arg("toxicity", "which scorer the head is for")
    datasets: list[str] = arg([], "training sources, comma-separated on the command line (empty: the task's default)")
    max_per_source_class: int = arg(6000, "cap on rows per (source, label), sampled with `seed`; 0 = no cap")
    eval_fraction: float = arg(0.1, "held-out share, split by group (a toxic sentence and its rewrites together)")
    benchmark: str = arg("auto", "extra evaluation set never trained on; 'auto': the task's default, 'none': skip")
    leave_one_source_out: bool = arg(
        False,
        "also train one head per source with that whole source left out and score it on the source: the "
        "per-source table says whether the head learned the task or its sources' phrasing",
    )
    cv_folds: int = arg(5, "refusal/harm: cross-validation folds (grouped by prompt) for the agreement estimate")
    embedder: str = arg("all-minilm-l6-v2", "sentence embedder (builtin name, folder or hub id)")
    max_length: int = arg(128, "embedder token limit")
    pooling: Literal["last", "layers"] = arg(
        "layers", "embedding features: the last layer's mean, or every layer's (richer)"
    )
    hidden_size: int = arg(256, "MLP hidden size; 0 = logistic regression, fitted by scikit-learn")
    C: float = arg(1.0, "logistic regression (hidden_size 0): inverse L2 strength, as in scikit-learn")
    dropout: float = arg(0.1, "dropout in the head")
    num_train_epochs: float = arg(8.0, "passes over the training split")
    install: bool = arg(False, "also copy the head and model card into the package (detoxkit/scorers/weights)")


# ---------------------------------------------------------------- data


def resolve_defaults(cfg: ScorerTrainConfig) -> ScorerTrainConfig:
    import dataclasses

    datasets, benchmark = TASK_DEFAULTS.get(cfg.task, (TOXICITY_DATASETS, "builtin:toxigen-200"))
    return dataclasses.replace(
        cfg, datasets=cfg.datasets or datasets, benchmark=benchmark if cfg.benchmark == "auto" else cfg.benchmark
    )


def benchmark_name(cfg: ScorerTrainConfig) -> str | None:
    return None if cfg.benchmark in ("none", "", None) else cfg.benchmark


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _stable_hash(s: str, seed: int) -> float:
    return int(hashlib.sha1(f"{seed}:{s}".encode()).hexdigest()[:12], 16) / 16**12


def build_rows(cfg: ScorerTrainConfig) -> tuple[list[dict], dict]:
    """Rows {text, label, source, group}; and a report of what was excluded."""
    import random

    from ..data import load_records, require_columns

    exclude: set[str] = set()
    if benchmark_name(cfg):
        exclude = {_norm(r["text"]) for r in load_records(cfg.benchmark, data_dir=cfg.data_dir)}
    rng = random.Random(cfg.seed)
    rows, removed = [], {}
    for spec in cfg.datasets:
        source, _, forced = spec.partition("=")
        records = load_records(source, data_dir=cfg.data_dir)
        # The group ids that decide the split name the source by its file name, not the folder it sits in: the same
        # file gives the same split wherever it is.
        name = source.split(":", 1)[-1] if source.startswith("builtin:") else Path(source).name
        per_label: dict[int, list[dict]] = {0: [], 1: []}
        if name == "paradetox":
            for i, r in enumerate(records):
                per_label[1].append({"text": r["text"], "label": 1, "group": f"{name}:{i}"})
                per_label[0].extend({"text": ref, "label": 0, "group": f"{name}:{i}"} for ref in r["references"])
        else:
            if not forced:
                require_columns(records, ["text", "label"], allow_empty=True)
            for i, r in enumerate(records):
                text = r["text"]
                if not isinstance(text, str) or not text.strip():
                    continue
                label = int(forced) if forced else int(r["label"])
                per_label[label].append({"text": text, "label": label, "group": f"{name}:{i}"})
        for label, items in per_label.items():
            kept = [it for it in items if _norm(it["text"]) not in exclude]
            removed[f"{name}/{label}"] = len(items) - len(kept)
            if cfg.max_per_source_class and len(kept) > cfg.max_per_source_class:
                # Sampled rows keep their group id, so the split below still never separates a pair.
                kept = rng.sample(kept, cfg.max_per_source_class)
            rows.extend({**it, "source": name} for it in kept)
    return rows, {"removed_as_benchmark_overlap": removed}


def split_rows(rows: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    train, held = [], []
    for r in rows:
        (held if _stable_hash(r["group"], seed) < eval_fraction else train).append(r)
    return train, held


def embed_cached(embedder, texts: list[str], name: str, max_length: int, pooling: str):
    """Embeddings cached by (embedder, max_length, pooling, texts) under $DETOXKIT_CACHE/embeddings."""
    from safetensors.torch import load_file, save_file

    from ..assets import cache_dir

    key = hashlib.sha1(json.dumps([name, max_length, pooling, str(embedder.model.dtype), texts]).encode()).hexdigest()[
        :20
    ]
    path = cache_dir() / "embeddings" / f"{key}.safetensors"
    if path.exists():
        return load_file(str(path))["x"]
    x = embedder.encode(texts, show_progress=True, pooling=pooling)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # several processes may embed at once
    save_file({"x": x}, str(tmp))
    tmp.replace(path)
    return x


# ---------------------------------------------------------------- training


def fit_logistic_regression(cfg: ScorerTrainConfig, x_train, y_train):
    """hidden_size 0: scikit-learn's L-BFGS logistic regression, converged, copied into the head's linear layer.

    On the small PyRIT sets (hundreds of rows) a converged, L2-regularised fit generalises better than a few
    hundred AdamW steps, and needs no checkpointing."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from .head import EmbeddingHead

    clf = LogisticRegression(C=cfg.C, max_iter=5000).fit(x_train.numpy(), y_train.numpy().astype(int))
    head = EmbeddingHead(x_train.shape[1], 0, cfg.dropout)
    with torch.no_grad():
        head.net.weight.copy_(torch.tensor(clf.coef_, dtype=torch.float32))
        head.net.bias.copy_(torch.tensor(clf.intercept_, dtype=torch.float32))
    return head.eval(), []


def train_head(cfg: ScorerTrainConfig, x_train, y_train, accelerator, out: Path | None):
    """AdamW + BCE (positives re-weighted to balance classes) on the embeddings; checkpointed, resumable.
    hidden_size 0 fits a logistic regression with scikit-learn instead."""
    import torch

    from ..runs import load_checkpoint, progress, resolve_resume, save_checkpoint
    from .head import EmbeddingHead

    if cfg.hidden_size == 0:
        return fit_logistic_regression(cfg, x_train, y_train)

    torch.manual_seed(cfg.seed)
    head = EmbeddingHead(x_train.shape[1], cfg.hidden_size, cfg.dropout)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    world, rank = accelerator.num_processes, accelerator.process_index
    n = len(y_train)
    global_batch = cfg.per_device_train_batch_size * world
    # Drop the ragged last batch: under DDP every rank must get a non-empty slice of every batch.
    steps_per_epoch = max(1, n // global_batch)
    total = cfg.max_steps if cfg.max_steps > 0 else int(math.ceil(cfg.num_train_epochs * steps_per_epoch))
    pos = float(y_train.sum())
    pos_weight = torch.tensor((n - pos) / max(pos, 1.0))
    step = 0
    resume = resolve_resume(out, cfg.resume_from_checkpoint) if out is not None else None
    if resume is not None:
        tensors, state = load_checkpoint(resume, {"head": opt})
        head.load_state_dict(tensors["head"])
        step = state["step"]
    head, opt = accelerator.prepare(head, opt)
    losses = []
    bar = progress(
        total=total,
        initial=step,
        desc=f"{cfg.task} head",
        unit="step",
        disable=not accelerator.is_main_process or out is None,
    )
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        # The epoch's order depends only on (seed, epoch), so a resumed run sees the same batches.
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + epoch))
        for b in range(offset, steps_per_epoch):
            idx = perm[b * global_batch : (b + 1) * global_batch][rank::world]
            head.train()
            logits = head(x_train[idx])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y_train[idx], pos_weight=pos_weight)
            opt.zero_grad()
            accelerator.backward(loss)
            opt.step()
            step += 1
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if out is not None and (step % cfg.save_steps == 0 or step == total):
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:
                    save_checkpoint(
                        out,
                        step,
                        {"head": accelerator.unwrap_model(head).state_dict()},
                        {
                            "epoch": epoch,
                            "loss": loss.item(),
                            "world_size": world,
                            "backend": getattr(accelerator.state, "backend", None),
                        },
                        {"head": opt},
                    )
            if step >= total:
                break
    bar.close()
    return accelerator.unwrap_model(head).eval(), losses


def score_head(head, x):
    import torch

    with torch.inference_mode():
        return torch.sigmoid(head(x)).tolist()


def pair_rows(cfg: ScorerTrainConfig) -> list[dict]:
    """Rows {prompt, response, label, group} for the refusal and harm heads."""
    from ..data import load_records, require_columns

    rows = []
    for source in cfg.datasets:
        records = load_records(source, data_dir=cfg.data_dir)
        # The group ids that decide the split name the source by its file name, not the folder it sits in: the same
        # file gives the same split wherever it is.
        name = source.split(":", 1)[-1] if source.startswith("builtin:") else Path(source).name
        if records and "harmful_answer" in records[0]:  # harmful/benign pairs: one pair = one CV group
            for r in records:
                group = f"{name}:{r['category']}:{_norm(r['benign'])}"
                rows.append(
                    {"prompt": r["benign"], "response": r["benign_answer"], "label": 0, "group": group, "source": name}
                )
                rows.append(
                    {
                        "prompt": r["harmful"],
                        "response": r["harmful_answer"],
                        "label": 1,
                        "group": group,
                        "source": name,
                    }
                )
            continue
        require_columns(records, ["prompt", "response", "label"], allow_empty=True)
        rows += [
            {
                "prompt": r["prompt"],
                "response": r["response"] or "",
                "label": int(r["label"]),
                "group": _norm(r["prompt"]),
                "source": name,
            }
            for r in records
        ]
    return rows


def training_prompts(task: str, data_dir: str | None = None) -> list[str]:
    """The prompts a default (shipped) refusal or harm head trained on: evaluation sets those heads judge
    exclude them."""
    cfg = ScorerTrainConfig(task=task, datasets=TASK_DEFAULTS[task][0], data_dir=data_dir)
    return list(dict.fromkeys(r["prompt"] for r in pair_rows(cfg)))


def toxicity_training_rows(data_dir: str | None = None) -> list[dict]:
    """The rows {text, label, source, group} the shipped toxicity head trained on (the training side of its default
    split): evaluation sets it judges are checked against them."""
    cfg = ScorerTrainConfig(datasets=TOXICITY_DATASETS, benchmark="builtin:toxigen-200", data_dir=data_dir)
    return split_rows(build_rows(cfg)[0], cfg.eval_fraction, cfg.seed)[0]


def task_features(cfg: ScorerTrainConfig, embedder, rows: list[dict]):
    """What the head sees: the text (toxicity) or the (prompt, response) pair (refusal, harm)."""
    if cfg.task == "toxicity":
        return embed_cached(embedder, [r["text"] for r in rows], cfg.embedder, cfg.max_length, cfg.pooling)
    from .head import pair_features

    return pair_features(embedder, [r["prompt"] for r in rows], [r["response"] for r in rows], cfg.pooling)


def cross_validate(cfg: ScorerTrainConfig, x, rows: list[dict], accelerator) -> list[float]:
    """Out-of-fold scores: each row scored by a head that never saw its prompt."""
    import torch

    folds = [int(_stable_hash(r["group"], cfg.seed) * cfg.cv_folds) for r in rows]
    scores = [0.0] * len(rows)
    for k in range(cfg.cv_folds):
        train_idx = [i for i, f in enumerate(folds) if f != k]
        test_idx = [i for i, f in enumerate(folds) if f == k]
        if not test_idx or not train_idx:
            continue
        y = torch.tensor([float(rows[i]["label"]) for i in train_idx])
        head, _ = train_head(cfg, x[train_idx], y, accelerator, None)
        for i, sc in zip(test_idx, score_head(head, x[test_idx])):
            scores[i] = sc
    return scores


def _features(cfg: ScorerTrainConfig, embedder, accelerator) -> dict:
    """Training rows and features, and the held-out rows (toxicity: a grouped split; refusal/harm: cross-validation,
    whose out-of-fold scores stand in for a held-out split on the small human-labelled sets)."""
    from ..eval.classification import classification_metrics

    if cfg.task == "toxicity":
        rows, report = build_rows(cfg)
        train, held = split_rows(rows, cfg.eval_fraction, cfg.seed)
        x_all = task_features(cfg, embedder, train + held)
        return {
            "train": train,
            "held": held,
            "x_train": x_all[: len(train)],
            "x_held": x_all[len(train) :],
            "metrics": {"train_rows": len(train), "heldout_rows": len(held), **report},
        }
    train = pair_rows(cfg)
    x_train = task_features(cfg, embedder, train)
    oof = cross_validate(cfg, x_train, train, accelerator)
    rules = [1.0 if _rule(cfg.task, r) else 0.0 for r in train]
    metrics = {
        "train_rows": len(train),
        "heldout_rows": len(train),
        "heldout_note": f"{cfg.cv_folds}-fold cross-validation grouped by prompt (out-of-fold scores)",
        "rules_only": classification_metrics([r["label"] for r in train], rules),
        "heldout_by_source": _by_source(train, oof),
        "heldout": classification_metrics([r["label"] for r in train], oof),
    }
    return {"train": train, "held": None, "x_train": x_train, "x_held": None, "metrics": metrics}


def _by_source(rows: list[dict], scores: list[float]) -> dict:
    from ..eval.classification import classification_metrics

    return {
        src: classification_metrics(
            [r["label"] for r in rows if r["source"] == src],
            [s for r, s in zip(rows, scores) if r["source"] == src],
            n_boot=200,
        )
        for src in sorted({r["source"] for r in rows})
    }


def leave_one_source_out(cfg: ScorerTrainConfig, x, rows: list[dict], accelerator) -> dict:
    """For each source: a head trained on every other source, scored on all of this one (never trained on).
    ROC-AUC needs both labels in the source; one-label sources report accuracy (the share called right)."""
    import torch

    from ..eval.classification import classification_metrics

    table = {}
    for source in sorted({r["source"] for r in rows}):
        held = [i for i, r in enumerate(rows) if r["source"] == source]
        train = [i for i, r in enumerate(rows) if r["source"] != source]
        if not train or len({rows[i]["label"] for i in train}) < 2:
            table[source] = {"skipped": "the other sources do not hold both labels"}
            continue
        y = torch.tensor([float(rows[i]["label"]) for i in train])
        head, _ = train_head(cfg, x[train], y, accelerator, None)
        scores = score_head(head, x[held])
        labels = [rows[i]["label"] for i in held]
        table[source] = {
            "never_trained_on": True,
            "labels": sorted(set(labels)),
            **classification_metrics(labels, scores, n_boot=200),
        }
    return table


def _benchmark(cfg: ScorerTrainConfig, embedder, head, train: list[dict]) -> dict:
    """The head on the task's benchmark set (never trained on; pair tasks drop rows whose prompt was)."""
    from ..data import load_records
    from ..eval.classification import classification_metrics

    bench = load_records(cfg.benchmark, data_dir=cfg.data_dir)
    if cfg.task == "toxicity":
        rows = [{"text": r["text"], "label": int(r["label"])} for r in bench]
    else:
        seen = {r["group"] for r in train}
        rows = [
            {"prompt": r["prompt"], "response": r["response"] or "", "label": int(r["label"])}
            for r in bench
            if _norm(r["prompt"]) not in seen
        ]
    scores = score_head(head, task_features(cfg, embedder, rows))
    return {"name": cfg.benchmark, **classification_metrics([r["label"] for r in rows], scores)}


def _save(cfg: ScorerTrainConfig, out: Path, head, metrics: dict) -> None:
    from ..runs import write_json
    from .head import WEIGHTS, save_head

    meta = {
        "task": cfg.task,
        "embedder": cfg.embedder,
        "max_length": cfg.max_length,
        "pooling": cfg.pooling,
        "threshold": 0.5,
        "version": f"{cfg.task}-mlp{cfg.hidden_size}-seed{cfg.seed}",
        "datasets": cfg.datasets,
        "seed": cfg.seed,
    }
    card = model_card(cfg, metrics)
    save_head(out / f"{cfg.task}_head.safetensors", head, meta)
    write_json(out / "metrics.json", metrics)
    (out / "MODEL_CARD.md").write_text(card)
    if cfg.install:
        save_head(WEIGHTS / f"{cfg.task}_head.safetensors", head, meta)
        (WEIGHTS / f"{cfg.task.upper()}.md").write_text(card)
        write_json(WEIGHTS / f"{cfg.task}_metrics.json", metrics)


def run(cfg: ScorerTrainConfig) -> dict:
    import torch
    from accelerate import Accelerator

    from ..eval.classification import classification_metrics
    from ..lm.embedder import load_embedder
    from ..runs import prepare_output_dir, seed_everything

    cfg = resolve_defaults(cfg)
    accelerator = Accelerator(cpu=cfg.device == "cpu")
    seed_everything(cfg.seed)
    out = prepare_output_dir(cfg) if accelerator.is_main_process else Path(cfg.output_dir)
    embedder = load_embedder(cfg.embedder, cfg.device, cfg.dtype)
    embedder.max_length = cfg.max_length
    f = _features(cfg, embedder, accelerator)
    metrics = {"task": cfg.task, **f["metrics"]}
    y_train = torch.tensor([float(r["label"]) for r in f["train"]])
    head, losses = train_head(cfg, f["x_train"], y_train, accelerator, out)
    if losses:
        metrics.update(loss_first=losses[0], loss_last=losses[-1])
    if f["held"] is not None:
        held_scores = score_head(head, f["x_held"])
        metrics["heldout"] = classification_metrics([r["label"] for r in f["held"]], held_scores)
        metrics["heldout_by_source"] = _by_source(f["held"], held_scores)
    if benchmark_name(cfg):
        metrics["benchmark"] = _benchmark(cfg, embedder, head, f["train"])
    if cfg.leave_one_source_out:
        rows = f["train"] + (f["held"] or [])
        x = f["x_train"] if f["held"] is None else torch.cat([f["x_train"], f["x_held"]])
        metrics["leave_one_source_out"] = leave_one_source_out(cfg, x, rows, accelerator)
    if accelerator.is_main_process:
        _save(cfg, out, head, metrics)
    return metrics


def summary(cfg: ScorerTrainConfig, metrics: dict) -> str:
    h = metrics["heldout"]
    line = (
        f"scorer train: {cfg.task} head on {metrics['train_rows']} rows; held-out ROC-AUC "
        f"{h.get('roc_auc', {}).get('value', float('nan')):.3f}, accuracy {h['accuracy']['value']:.3f}, "
        f"F1 {h['f1']['value']:.3f}"
    )
    if "benchmark" in metrics:
        b = metrics["benchmark"]
        line += (
            f"; {b['name']} ROC-AUC {b.get('roc_auc', {}).get('value', float('nan')):.3f}, accuracy "
            f"{b['accuracy']['value']:.3f}"
        )
    return f"{line} -> {cfg.output_dir}"


def _rule(task: str, row: dict) -> bool:
    """The rules-only baseline: refusal = the phrase rules; harm = the response does not refuse."""
    from .rules import refusal_rule

    refused = refusal_rule(row["response"])
    return refused if task == "refusal" else not refused


def _fmt(m: dict, key: str) -> str:
    if key not in m:
        return "n/a"
    lo, hi = m[key]["ci95"]
    return f"{m[key]['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def model_card(cfg: ScorerTrainConfig, metrics: dict) -> str:
    lines = [
        f"# detoxkit `{cfg.task}` scorer head",
        "",
        (
            f"An MLP (hidden {cfg.hidden_size})"
            if cfg.hidden_size
            else f"A logistic regression (scikit-learn, C={cfg.C})"
        )
        + f" on frozen `{cfg.embedder}` sentence embeddings"
        f" (mean-pooled {'per layer, concatenated' if cfg.pooling == 'layers' else 'last layer'}, max {cfg.max_length} tokens)."
        " Accuracy is agreement with the human labels.",
        "An offline proxy for Perspective/Detoxify/LlamaGuard-style judges: reports that use it label it so.",
        "",
        "## Training data",
        "",
        *[f"- `{d}`" for d in cfg.datasets],
        "",
        *(
            [
                f"At most {cfg.max_per_source_class} rows per (source, label), seed {cfg.seed}. Held-out split: {cfg.eval_fraction:.0%} of groups",
                "by a seeded hash (a ParaDetox toxic sentence and its rewrites share a group, so no pair straddles the split).",
                f"Rows in the evaluation set `{cfg.benchmark}` were removed from training: {json.dumps(metrics.get('removed_as_benchmark_overlap', {}))}.",
            ]
            if cfg.task == "toxicity"
            else [
                f"Held-out: {metrics.get('heldout_note')}; the shipped head is then trained on all rows.",
                "Benchmark rows whose prompt appears in the training data are dropped before scoring.",
            ]
        ),
        "",
        f"Train rows: {metrics['train_rows']}; held-out rows: {metrics['heldout_rows']}.",
        "",
        "## Results (95% intervals: bootstrap for AUCs and F1, Wilson for rates)",
        "",
        "| set | n | ROC-AUC | AUPRC | F1 | accuracy |",
        "|---|---|---|---|---|---|",
        f"| held-out | {metrics['heldout']['n']} | {_fmt(metrics['heldout'], 'roc_auc')} | {_fmt(metrics['heldout'], 'auprc')} | {_fmt(metrics['heldout'], 'f1')} | {_fmt(metrics['heldout'], 'accuracy')} |",
    ]
    for src, m in metrics.get("heldout_by_source", {}).items():
        lines.append(
            f"| held-out: {src} | {m['n']} | {_fmt(m, 'roc_auc')} | {_fmt(m, 'auprc')} | {_fmt(m, 'f1')} | {_fmt(m, 'accuracy')} |"
        )
    if "rules_only" in metrics:
        r = metrics["rules_only"]
        lines.append(
            f"| rules only (no head), same rows | {r['n']} | n/a | n/a | {_fmt(r, 'f1')} | {_fmt(r, 'accuracy')} |"
        )
    if "benchmark" in metrics:
        b = metrics["benchmark"]
        lines.append(
            f"| {b['name']} (never trained on) | {b['n']} | {_fmt(b, 'roc_auc')} | {_fmt(b, 'auprc')} | {_fmt(b, 'f1')} | {_fmt(b, 'accuracy')} |"
        )
    for src, m in metrics.get("leave_one_source_out", {}).items():
        if "n" in m:
            lines.append(
                f"| whole source left out: {src} | {m['n']} | {_fmt(m, 'roc_auc')} | {_fmt(m, 'auprc')} | {_fmt(m, 'f1')} | {_fmt(m, 'accuracy')} |"
            )
    config = "scorer_train.yaml" if cfg.task == "toxicity" else f"scorer_train_{cfg.task}.yaml"
    lines += ["", f"Reproduce: `detoxkit scorer train --config configs/{config}` (seed {cfg.seed}).", ""]
    return "\n".join(lines)


TRAIN = Recipe(ScorerTrainConfig, run, summary)


if __name__ == "__main__":  # accelerate launch -m detoxkit.scorers.train ...
    from ..cli import main

    sys.exit(main(["scorer", "train", *sys.argv[1:]]))
