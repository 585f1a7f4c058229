"""The control judge: what the same compute buys without the attacker.

Each round it is fine-tuned, with the adversarial judge's epochs, batch size, learning rate and seed, on the seed
rows so far plus, in place of the attacker's prompts, as many random training-side prompts (balanced per source,
with their dataset labels) per kind as the adversarial judge was trained on of that round's attacker prompts. Its
data is exactly as large as the adversarial judge's every round, so it takes the same optimiser steps; the
difference of the two on the same evaluation rows is the gain of the adversarial rounds
(evaluate.control_comparison, paired intervals).
"""

from __future__ import annotations

import random
from pathlib import Path


def control_dataset(
    rows: list[dict], splits: dict, upto_round: int, seed: int, agreement: bool = False
) -> tuple[list[str], list[int]]:
    """The control judge's data after round `upto_round`: seed rows of rounds <= it, then per round 1..upto_round
    random training-side prompts, as many per kind as the adversarial judge trained on of that round's generated
    prompts (datasets.trained_on; `agreement`: --oracle_agreement)."""
    from .datasets import trained_on
    from .sources import SourcePool, by_source

    seeds = [r for r in rows if r.get("type") == "seed"]
    rng = random.Random(seed)
    used = {r["prompt"] for r in seeds} | {r["prompt"] for r in rows if r.get("type") == "prompt"}
    pools = {y: SourcePool(by_source(splits["records"], "train", y), rng, exclude=used) for y in (1, 0)}
    kept = [r for r in seeds if r.get("round", 0) <= upto_round]
    prompts, labels = [r["prompt"] for r in kept], [int(r["label"]) for r in kept]
    for rnd in range(1, upto_round + 1):
        written = [r for r in rows if trained_on(r, rnd, agreement) and r["round"] == rnd]
        n_pos = sum(r["kind"] == "problematic" for r in written)
        for y, n in ((1, n_pos), (0, len(written) - n_pos)):
            picked = pools[y].take(n)
            prompts += [t for t, _ in picked]
            labels += [y] * len(picked)
    return prompts, labels


def run_control(cfg, rows: list[dict], splits: dict, judge, evaluator=None, log=print, out: Path | None = None):
    """Fine-tune `judge` (a fresh copy of the reference) round by round on control_dataset, evaluating each round
    with evaluator(judge, round, extra); returns [{round, train_size, steps}]. With `out`, each round's weights are
    checkpointed in out/control/checkpoint-<round>, and a run resumed there goes on after the newest one (each
    round's fine-tune is seeded by its round, so the result equals an uninterrupted run)."""
    from .judge import fit_judge

    done = sorted(r["round"] for r in rows if r.get("type") == "round_done")
    out_rows = restore_control(out, judge, log) if out is not None else []
    for rnd in done[len(out_rows) :]:
        prompts, labels = control_dataset(rows, splits, rnd, cfg.seed, cfg.oracle_agreement)
        losses = fit_judge(cfg, judge, prompts, labels, rnd)
        judge.threshold = 0.5
        info = {"round": rnd, "train_size": len(prompts), "steps": len(losses)}
        out_rows.append(info)
        log(f"control judge round {rnd}: {len(prompts)} prompts, {len(losses)} steps")
        if out is not None:
            save_control(out, rnd, judge, out_rows)
        if evaluator is not None:
            evaluator(judge, rnd, info)
    return out_rows


def save_control(out: Path, rnd: int, judge, rows: list[dict]) -> None:
    """The control judge after `rnd`: its trainable weights and the rounds so far."""
    from ..runs import save_checkpoint

    save_checkpoint(out / "control", rnd, {"judge": judge.trainable_state()}, {"control": rows})


def restore_control(out: Path, judge, log=print) -> list[dict]:
    """The control rounds a stopped run finished (its newest out/control checkpoint), with their weights loaded into
    `judge`; [] when there is none."""
    from ..runs import list_checkpoints, load_checkpoint

    ckpts = list_checkpoints(out / "control")
    if not ckpts:
        return []
    tensors, state = load_checkpoint(ckpts[-1])
    judge.load_trainable(tensors.get("judge", {}), str(ckpts[-1] / "judge.safetensors"))
    judge.threshold = 0.5
    log(f"control judge: resuming after round {state['step']} from {ckpts[-1]}")
    return state["control"]
