"""Opposite Prompt Optimization (ACD §3.2): tune the safeguarding and the adversarial soft prompt, model frozen.

Each step draws `per_device_train_batch_size` pairs from each of D_HR, D_HA and D_S and scores all of them under
both prompts as rows of one forward (6·bs rows). L_SP = L_p(D_HR) + L_n(D_HA) + L_r(D_S) updates only the safe
prompt, L_AP = L_p(D_HA) + L_n(D_HR) + L_r(D_S) only the adversarial one; the parameters are disjoint and each
prompt's gradient is clipped on its own, so one backward of L_SP + L_AP with Adam (per-parameter) is the same as
optimising them separately, as the paper does.
The batch of step t is drawn from a generator seeded by (seed, t), so resuming reproduces the uninterrupted run.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..config import Recipe
from ..core.logprobs import token_logprobs
from ..core.losses import opo_loss
from ..errors import DetoxkitError
from ..lm.soft_prompt import SoftPrompt, assert_frozen, build_inputs, freeze
from .config import TuneConfig

SPLITS = ("D_HR", "D_HA", "D_S")


def load_anchor_splits(path: str | Path) -> dict[str, list[dict]]:
    """anchors.jsonl -> {"D_HR": [...], "D_HA": [...], "D_S": [...]}; each split must be non-empty."""
    from ..data import load_records, require_columns

    rows = load_records(str(path))
    require_columns(rows, ["prompt", "response", "split"])
    splits = {s: [r for r in rows if r["split"] == s and str(r["response"]).strip()] for s in SPLITS}
    empty = [s for s, v in splits.items() if not v]
    if empty:
        raise DetoxkitError(
            f"{path}: anchor split(s) {', '.join(empty)} are empty; sample more responses "
            "(--samples_per_prompt, --n_harmful) or change the scorer thresholds"
        )
    return splits


def _truncate(tok, text: str, n: int) -> str:
    ids = tok.encode(text, add_special_tokens=False)
    return text if len(ids) <= n else tok.decode(ids[:n])


def step_batch(splits: dict[str, list[dict]], bs: int, seed: int, step: int) -> dict[str, list[dict]]:
    """The pairs of step `step`: bs from each split, drawn by a generator seeded with (seed, step)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return {s: [rows[int(i)] for i in torch.randint(len(rows), (bs,), generator=g)] for s, rows in splits.items()}


def opo_step_losses(
    model, tok, safe: SoftPrompt, adv: SoftPrompt, batch: dict[str, list[dict]], max_response_tokens: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_SP + L_AP on one batch, both prompts as rows of one forward. Returns (loss, logged parts)."""
    pairs = [(r["prompt"], _truncate(tok, r["response"], max_response_tokens)) for s in SPLITS for r in batch[s]]
    n = len(pairs)
    prompts = [p for p, _ in pairs] * 2
    completions = [c for _, c in pairs] * 2
    b = build_inputs(model, tok, prompts, [safe] * n + [adv] * n, completions)
    logits = model(**b.model_inputs()).logits
    logp = token_logprobs(logits, b.input_ids)
    mask = b.completion_mask[:, 1:]
    sizes = [len(batch[s]) for s in SPLITS]
    bounds = torch.tensor([0] + sizes).cumsum(0).tolist()

    def part(branch: int, split: str):
        i = SPLITS.index(split)
        lo, hi = branch * n + bounds[i], branch * n + bounds[i + 1]
        return logp[lo:hi], mask[lo:hi]

    l_sp, sp_parts = opo_loss(part(0, "D_HR"), part(0, "D_HA"), part(0, "D_S"))
    l_ap, ap_parts = opo_loss(part(1, "D_HA"), part(1, "D_HR"), part(1, "D_S"))
    logged = {f"sp_{k}": v for k, v in sp_parts.items()} | {f"ap_{k}": v for k, v in ap_parts.items()}
    return l_sp + l_ap, {"loss_sp": l_sp.item(), "loss_ap": l_ap.item(), **logged}


def tune(cfg, model=None, tok=None) -> dict:
    """Run OPO for a :class:`~detoxkit.acd.config.TuneConfig`; returns the final metrics."""
    from ..lm.load import load_model_and_tokenizer
    from ..runs import (
        append_jsonl,
        load_checkpoint,
        prepare_output_dir,
        progress,
        resolve_resume,
        save_checkpoint,
        seed_everything,
        write_json,
    )

    seed_everything(cfg.seed)
    out = prepare_output_dir(cfg)
    if model is None:
        model, tok = load_model_and_tokenizer(cfg.model, cfg.dtype, cfg.device)
    model.eval()
    freeze(model)
    splits = load_anchor_splits(cfg.anchors)
    safe = SoftPrompt.from_text(model, tok, cfg.safe_prompt, cfg.model)
    adv = SoftPrompt.from_text(model, tok, cfg.opposite_prompt, cfg.model)
    opt = torch.optim.Adam([safe.embeddings, adv.embeddings], lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    start, history = 0, []
    ckpt = resolve_resume(out, cfg.resume_from_checkpoint)
    if ckpt is not None:
        tensors, state = load_checkpoint(ckpt, {"adam": opt})
        with torch.no_grad():
            safe.embeddings.copy_(tensors["safe_prompt"]["embeddings"])
            adv.embeddings.copy_(tensors["adv_prompt"]["embeddings"])
        start, history = int(state["step"]), state.get("history", [])
    log_path = Path(out) / "log.jsonl"

    t0 = time.time()
    bar = progress(range(start, cfg.max_steps), desc="acd tune", unit="step", initial=start, total=cfg.max_steps)
    for step in bar:
        batch = step_batch(splits, cfg.per_device_train_batch_size, cfg.seed, step)
        loss, parts = opo_step_losses(model, tok, safe, adv, batch, cfg.max_response_tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        assert_frozen(model)
        # Each prompt clipped on its own: a joint norm would let one prompt's gradient scale the other's update.
        norms = [float(torch.nn.utils.clip_grad_norm_([sp.embeddings], cfg.max_grad_norm)) for sp in (safe, adv)]
        opt.step()
        row = {"step": step + 1, "loss": loss.item(), "grad_norm_sp": norms[0], "grad_norm_ap": norms[1], **parts}
        history.append(row)
        if (step + 1) % cfg.logging_steps == 0:
            append_jsonl(log_path, [row])
        bar.set_postfix(sp=f"{parts['loss_sp']:.1f}", ap=f"{parts['loss_ap']:.1f}")
        if cfg.save_steps and (step + 1) % cfg.save_steps == 0 and step + 1 < cfg.max_steps:
            save_checkpoint(
                out,
                step + 1,
                {"safe_prompt": {"embeddings": safe.embeddings}, "adv_prompt": {"embeddings": adv.embeddings}},
                {"history": history},
                {"adam": opt},
            )

    safe.save(Path(out) / "safe_prompt.safetensors")
    adv.save(Path(out) / "adv_prompt.safetensors")
    first, last = (history[0], history[-1]) if history else ({}, {})
    metrics = {
        "steps": cfg.max_steps,
        "resumed_from": start,
        "seconds": round(time.time() - t0, 1),
        "anchors": {s: len(v) for s, v in splits.items()},
        "loss_sp_first": first.get("loss_sp"),
        "loss_sp_last": last.get("loss_sp"),
        "loss_ap_first": first.get("loss_ap"),
        "loss_ap_last": last.get("loss_ap"),
        "safe_prompt_tokens": safe.n_tokens,
        "adv_prompt_tokens": adv.n_tokens,
    }
    write_json(Path(out) / "metrics.json", metrics)
    return metrics


def summary(cfg, m: dict) -> str:
    if m["loss_sp_first"] is None:
        return f"acd tune: nothing to do (already at step {m['resumed_from']}) -> {cfg.output_dir}"
    return (
        f"acd tune: {m['steps']} steps in {m['seconds']} s; L_SP {m['loss_sp_first']:.2f} -> {m['loss_sp_last']:.2f}, "
        f"L_AP {m['loss_ap_first']:.2f} -> {m['loss_ap_last']:.2f} -> {cfg.output_dir}/safe_prompt.safetensors, "
        "adv_prompt.safetensors"
    )


TUNE = Recipe(TuneConfig, tune, summary)
