"""`detoxkit adversarial run`: the attacker–judge loop, resumable from its JSONL log.

prompts.jsonl holds, in order: one {"type": "seed"} row per seed example, one {"type": "prompt"} row per
prompt slot (round, slot, kind, prompt, label, judge score, verdict, fooled, duplicate), and one
{"type": "round_done"} row after a round's fine-tunes are checkpointed. On resume the weights come from the
checkpoint of the last finished round and the slots already logged in the current round are skipped, so
nothing is lost and nothing repeated; every slot samples from its own seed (one batched generate per round, one
generator per row, the whole round's batch regenerated on resume), so the result equals an uninterrupted run.
Judge and attacker are two LoRA adapters on one copy of the base model (load_roles); the round_done rows record the
time of every stage and the peak RSS so far.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..config import Recipe
from ..memory import MAX_MMAP_THRESHOLD_MB, fix_mmap_threshold, peak_rss_mb
from .config import AdversarialRunConfig
from .datasets import agrees, attacker_dataset, judge_dataset

KINDS = ("problematic", "benign")


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


class Deduper:
    """Rejects exact (case/space-normalised) and near duplicates (embedding cosine >= threshold) of accepted texts."""

    def __init__(self, embedder, threshold: float):
        import torch

        self.embedder, self.threshold = embedder, threshold
        self.seen: set[str] = set()
        self.emb = torch.empty(0, 0)

    def add(self, texts: list[str]) -> None:
        import torch

        texts = [t for t in texts if normalise(t) not in self.seen]
        if not texts:
            return
        self.seen.update(normalise(t) for t in texts)
        new = self.embedder.encode(texts) if self.embedder is not None else None
        if new is not None:
            self.emb = new if self.emb.numel() == 0 else torch.cat([self.emb, new])

    def is_duplicate(self, text: str) -> bool:
        if not text.strip() or normalise(text) in self.seen:
            return True
        if self.embedder is None or self.emb.numel() == 0:
            return False
        return bool((self.embedder.encode([text]) @ self.emb.T).max() >= self.threshold)


def restore(out: Path, rows: list[dict], judge, attacker, calibrate: bool, log=print) -> int:
    """The round to continue after (0 for a new run), with the judge and attacker weights of its checkpoint; a new
    run's reference judge gets the threshold that best separates the seed data (when `calibrate`)."""
    from ..errors import DetoxkitError
    from ..runs import list_checkpoints, load_checkpoint
    from .judge import calibrate_threshold

    if not any(r.get("type") == "seed" for r in rows):
        raise DetoxkitError(f"{out / 'prompts.jsonl'}: no seed rows (write them with start_log first)")
    finished = sorted(r["round"] for r in rows if r.get("type") == "round_done")
    start = finished[-1] if finished else 0
    if start:
        ckpt = out / f"checkpoint-{start}"
        if ckpt not in list_checkpoints(out):
            raise DetoxkitError(f"{out / 'prompts.jsonl'}: round {start} is logged as done but {ckpt} is missing")
        tensors, _ = load_checkpoint(ckpt)
        judge.load_trainable(tensors.get("judge", {}), str(ckpt / "judge.safetensors"))
        attacker.load_trainable(tensors.get("attacker", {}), str(ckpt / "attacker.safetensors"))
        log(f"resuming after round {start} from {ckpt}")
        judge.threshold = 0.5
    elif calibrate:
        seeds = [r for r in rows if r.get("type") == "seed"]
        with judge.reference():
            scores = judge.predict_proba([r["prompt"] for r in seeds])
        judge.threshold = calibrate_threshold(scores, [r["label"] for r in seeds])
        log(f"reference judge threshold {judge.threshold:.4f} (calibrated on the {len(seeds)} seed prompts)")
    return start


def _phrasing(cfg, rnd: int, slot: int) -> str | None:
    """The phrasing the attacker is asked for in this slot (None: the paper's bare request)."""
    from .wording import phrasing_for_slot

    return phrasing_for_slot(rnd, slot) if cfg.vary_phrasing else None


def draft_round(cfg, rnd: int, attacker, times: dict) -> list[str]:
    """Attempt 0 of every slot of the round, from one batched generate. Always the whole round, on resume too: each
    row draws from its own seed, but its logits still see its batch (padding), so the batches must be the same ones
    an uninterrupted run had."""
    t0 = time.perf_counter()
    slots = range(cfg.prompts_per_round)
    drafts = attacker.write_many([(KINDS[s % 2], rnd, s, 0, _phrasing(cfg, rnd, s)) for s in slots])
    times["generate"] += time.perf_counter() - t0
    return drafts


def write_slot(cfg, rnd: int, slot: int, draft: str, attacker, judge, oracle, dedup, times: dict) -> dict:
    """One prompt slot: the attacker's draft (a duplicate is rewritten: the slot's further attempts in one batch),
    the oracle labels, the judge scores."""
    from .wording import classify_phrasing

    kind, phrasing = KINDS[slot % 2], _phrasing(cfg, rnd, slot)  # the paper's order: problematic, then benign
    t0, generating = time.perf_counter(), 0.0
    prompt, attempt, duplicate = draft, 0, dedup.is_duplicate(draft)
    if duplicate and cfg.max_tries > 1:
        t1 = time.perf_counter()
        retries = attacker.write_many([(kind, rnd, slot, a, phrasing) for a in range(1, cfg.max_tries)])
        generating = time.perf_counter() - t1
        for prompt in retries:
            attempt += 1
            duplicate = dedup.is_duplicate(prompt)
            if not duplicate:
                break
    times["generate"] += generating
    times["dedup"] += time.perf_counter() - t0 - generating
    row = {
        "type": "prompt",
        "round": rnd,
        "slot": slot,
        "kind": kind,
        "phrasing": phrasing,
        "phrasing_detected": classify_phrasing(prompt),
        "prompt": prompt,
        "attempts": attempt + 1,
        "duplicate": duplicate,
        "label": None,
        "judge_score": None,
        "verdict": None,
        "fooled": False,
    }
    if not duplicate:
        t0 = time.perf_counter()
        row["label"] = int(oracle.label([prompt])[0])
        t1 = time.perf_counter()
        row["judge_score"] = float(judge.predict_proba([prompt])[0])
        times["label"] += t1 - t0
        times["judge"] += time.perf_counter() - t1
        row["verdict"] = int(row["judge_score"] >= judge.threshold)
        row["fooled"] = row["label"] == 1 and row["verdict"] == 0
        dedup.add([prompt])
    return row


def finish_round(cfg, rnd: int, rows: list[dict], judge, attacker, out: Path, times: dict) -> dict:
    """Fine-tune the judge on all labelled data and the attacker on its successes; checkpoint; the round's summary.
    The last round's attacker fine-tune is skipped: no round follows to use it (a run resumed with more rounds
    starts them with the attacker of the round before)."""
    from ..runs import save_checkpoint
    from .judge import fit_judge

    t0 = time.perf_counter()
    prompts, labels = judge_dataset(rows, rnd, cfg.oracle_agreement)
    judge_losses = fit_judge(cfg, judge, prompts, labels, rnd)
    t1 = time.perf_counter()
    attacks = attacker_dataset(rows, rnd, cfg.oracle_agreement) if rnd < cfg.rounds else []
    attacker_losses = (
        attacker.finetune(
            attacks,
            epochs=cfg.attacker_epochs,
            learning_rate=cfg.learning_rate,
            batch_size=cfg.per_device_train_batch_size,
            seed=cfg.seed * 1000 + rnd,
        )
        if attacks
        else []
    )
    t2 = time.perf_counter()
    times.update(finetune=t2 - t0, finetune_judge=t1 - t0, finetune_attacker=t2 - t1)
    verdict_threshold, judge.threshold = judge.threshold, 0.5  # a fine-tuned judge answers at 0.5
    tensors = {k: v for k, v in (("judge", judge.trainable_state()), ("attacker", attacker.trainable_state())) if v}
    save_checkpoint(out, rnd, tensors, {"round": rnd, "judge": judge.meta, "attacker": attacker.meta}, keep_last=0)
    times["checkpoint"] = time.perf_counter() - t2
    this = [r for r in rows if r.get("type") == "prompt" and r["round"] == rnd]
    return {
        "type": "round_done",
        "round": rnd,
        "verdict_threshold": verdict_threshold,
        "judge_train_size": len(prompts),
        "attacker_train_size": len(attacks),
        "duplicates": sum(r["duplicate"] for r in this),
        "oracle_problematic": sum(r["label"] == 1 for r in this if not r["duplicate"]),
        "oracle_disagrees": sum(not agrees(r) for r in this if not r["duplicate"]),
        "fooled": sum(r["fooled"] for r in this),
        "judge_loss_first": judge_losses[0] if judge_losses else None,
        "judge_loss_last": judge_losses[-1] if judge_losses else None,
        "attacker_loss_last": attacker_losses[-1] if attacker_losses else None,
        "time_s": {k: round(v, 2) for k, v in times.items()},
        "peak_rss_mb": peak_rss_mb(),
    }


def write_round(cfg, rnd: int, rows: list[dict], attacker, judge, oracle, dedup, log_path: Path) -> dict:
    """The round's prompt slots not logged yet, each row appended to the log at once; the stage times (seconds)."""
    from ..runs import append_jsonl, progress

    done_slots = {r["slot"] for r in rows if r.get("type") == "prompt" and r["round"] == rnd}
    times = dict.fromkeys(("generate", "dedup", "label", "judge", "finetune"), 0.0)
    if len(done_slots) == cfg.prompts_per_round:
        return times
    drafts = draft_round(cfg, rnd, attacker, times)
    for slot in progress(range(cfg.prompts_per_round), desc=f"round {rnd}", unit="prompt"):
        if slot not in done_slots:
            row = write_slot(cfg, rnd, slot, drafts[slot], attacker, judge, oracle, dedup, times)
            append_jsonl(log_path, [row])  # written at once: this row is never asked or labelled again
            rows.append(row)
    return times


def run_loop(cfg, attacker, judge, oracle, embedder, out: Path, evaluator=None, log=print) -> list[dict]:
    """Run (or resume) cfg.rounds rounds in `out`; returns the round_done rows (with the eval time of this process).

    attacker: write_many([(kind, round, slot, attempt), ...]) -> [str], finetune(prompts, ...), trainable_state(),
    load_trainable(); judge: predict_proba(prompts), reference() (context: the untrained base), finetune(prompts,
    labels, ...), trainable_state(), load_trainable(), meta; oracle: label(prompts) -> 0/1; evaluator(judge, round)
    -> None (optional, called after round 0, with the reference, and each round).
    """
    from ..runs import append_jsonl, read_jsonl
    from .wording import round_diversity

    log_path = out / "prompts.jsonl"
    rows = read_jsonl(log_path)
    start = restore(out, rows, judge, attacker, cfg.calibrate_reference, log)
    if evaluator is not None and start == 0:
        t0 = time.perf_counter()
        with judge.reference():
            evaluator(judge, 0)
        log(f"round 0 (reference) eval {time.perf_counter() - t0:.1f}s")
    dedup = Deduper(embedder, cfg.dedup_threshold)
    dedup.add(
        [r["prompt"] for r in rows if r.get("type") == "seed" or (r.get("type") == "prompt" and not r["duplicate"])]
    )
    summaries = [r for r in rows if r.get("type") == "round_done"]
    for rnd in range(start + 1, cfg.rounds + 1):
        times = write_round(cfg, rnd, rows, attacker, judge, oracle, dedup, log_path)
        summary = finish_round(cfg, rnd, rows, judge, attacker, out, times)
        written = [r for r in rows if r.get("type") == "prompt" and r["round"] == rnd and not r["duplicate"]]
        summary["diversity"] = round_diversity(
            [r["prompt"] for r in written], embedder, [r.get("phrasing") for r in written]
        )
        append_jsonl(log_path, [summary])
        rows.append(summary)
        summaries.append(summary)
        log(
            f"round {rnd}: {cfg.prompts_per_round} prompts ({summary['duplicates']} duplicates), "
            f"{summary['oracle_problematic']} problematic ({summary['oracle_disagrees']} labelled against the kind "
            f"asked for{', not trained on' if cfg.oracle_agreement else ''}), {summary['fooled']} fooled the judge; "
            "judge trained on "
            f"{summary['judge_train_size']}, attacker on {summary['attacker_train_size']}"
        )
        if evaluator is not None:
            t0 = time.perf_counter()
            evaluator(judge, rnd)
            summary["time_s"]["eval"] = round(time.perf_counter() - t0, 2)
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary["time_s"].items())
        log(f"round {rnd} stages: {stages}; peak RSS {peak_rss_mb():.0f} MB")
    return summaries


def start_log(out: Path, seed_rows: list[dict]) -> None:
    """Write the seed rows once per round (a resumed run keeps the ones it has; rounds it lacks are added)."""
    from ..runs import append_jsonl, read_jsonl

    have = {r.get("round", 0) for r in read_jsonl(out / "prompts.jsonl") if r.get("type") == "seed"}
    new = [{"type": "seed", **r} for r in seed_rows if r.get("round", 0) not in have]
    if new:
        append_jsonl(out / "prompts.jsonl", new)


def holdout_evaluator(cfg, out: Path, splits: dict, file: str = "eval.jsonl"):
    """evaluator(judge, round, extra=None): score the round's judge on every evaluation set once, appending to
    out/file; the first call (round 0, the untrained reference) builds holdout.jsonl."""
    from ..errors import DetoxkitError
    from ..runs import append_jsonl, read_jsonl
    from .evaluate import build_eval_sets, holdout_metrics, score_holdout

    evaluated = {e["round"] for e in read_jsonl(out / file)}

    def evaluator(j, rnd, extra=None):
        if rnd in evaluated:
            return
        t0 = time.perf_counter()
        if not (out / "holdout.jsonl").exists():
            # round 0: the judge is untrained, so it is the reference (base model zero-shot, calibrated threshold)
            rows = build_eval_sets(j, splits, cfg)
            if not any(r["set"] in ("problematic", "benign") for r in rows):
                raise DetoxkitError(
                    f"{out / 'holdout.jsonl'}: no reference-misses hold-out row is left (every hold-out prompt is "
                    f"within --leak_threshold {cfg.leak_threshold} of a training-side one; counts in "
                    f"{out / 'splits.json'}): raise --leak_threshold or --holdout_problematic/--holdout_benign"
                )
            append_jsonl(out / "holdout.jsonl", rows)
        holdout = read_jsonl(out / "holdout.jsonl")
        scores = score_holdout(j, holdout, cfg.batch_size)
        m = holdout_metrics(holdout, scores, j.threshold, cfg.max_fpr)
        row = {"round": rnd, "threshold": j.threshold, "judge_template": cfg.judge_template, "scores": scores}
        append_jsonl(out / file, [{**row, "metrics": m, **(extra or {}), "time_s": round(time.perf_counter() - t0, 2)}])
        evaluated.add(rnd)
        auc = m.get("transfer", {}).get("roc_auc")
        held = (m.get("heldout_sources") or {}).get("all", {}).get("roc_auc")
        print(
            f"{file} round {rnd}: reference-misses hold-out accuracy {m['holdout']['accuracy']['value']:.3f}"
            + (f", held-out sources ROC-AUC {held['value']:.3f}" if held else "")
            + (f", transfer ROC-AUC {auc['value']:.3f}" if auc else "")
        )

    return evaluator


def load_roles(cfg, with_attacker: bool = True):
    """(judge, attacker or None), the judge asked with --judge_template. With a LoRA judge and a LoRA (or frozen)
    attacker of the same model, both live on ONE copy of the base weights: the judge's adapter "default", the
    attacker's adapter "attacker" (or the bare base), the reference = the judge with its adapter disabled. A full or
    last_layers fine-tune changes the base weights, so then each role loads its own copy, as before."""
    from .attacker import Attacker
    from .judge import Judge
    from .wording import judge_template

    lora = dict(lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_target_modules=cfg.lora_target_modules)
    load = dict(lora, num_train_layers=cfg.num_train_layers, dtype=cfg.dtype, device=cfg.device)
    template = judge_template(cfg.judge_template)
    judge = Judge.load(cfg.judge_model, train_mode=cfg.judge_train_mode, template=template, **load)
    judge.micro_batch_size = cfg.micro_batch_size or None
    judge.micro_batch_tokens = cfg.micro_batch_tokens or None
    if not with_attacker:
        return judge, None
    sampling = dict(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
    )
    shared = (
        cfg.judge_train_mode == "lora"
        and cfg.attacker_train_mode in ("lora", "none")
        and cfg.attacker_model == cfg.judge_model
    )
    if shared:
        attacker = Attacker.on_base(judge, "attacker", cfg.attacker_train_mode, **lora, **sampling)
    else:
        attacker = Attacker.load(cfg.attacker_model, train_mode=cfg.attacker_train_mode, **load, **sampling)
    attacker.micro_batch_size = cfg.micro_batch_size or None
    attacker.micro_batch_tokens = cfg.micro_batch_tokens or None
    return judge, attacker


def run_splits(cfg, embedder) -> dict:
    """The run's prompt splits: its sources and held-out sources, leak-checked, its --reserved prompts kept out (a
    relative --reserved path is read from the current folder)."""
    from ..data import texts_from
    from .evaluate import builtin_splits

    reserved = texts_from([], cfg.reserved, "prompt", "reserve") if cfg.reserved else []
    return builtin_splits(embedder, cfg.leak_threshold, cfg.sources, cfg.holdout_sources, reserved)


def run(cfg) -> dict:
    """`detoxkit adversarial run` for an :class:`~detoxkit.adversarial.config.AdversarialRunConfig`."""
    from ..errors import DetoxkitError
    from ..lm.embedder import load_embedder
    from ..runs import prepare_output_dir, read_jsonl, seed_everything, write_json
    from .oracles import build_oracle
    from .sources import seed_data, splits_summary

    out = Path(cfg.output_dir)
    if (out / "prompts.jsonl").exists() and not cfg.resume_from_checkpoint:
        raise DetoxkitError(f"{out}/prompts.jsonl exists: pass --resume_from_checkpoint latest or a new --output_dir")
    if cfg.rounds < 1 or cfg.prompts_per_round < 1:
        raise DetoxkitError("--rounds and --prompts_per_round must be at least 1")
    if not 0 <= cfg.mmap_threshold_mb <= MAX_MMAP_THRESHOLD_MB:
        raise DetoxkitError(
            f"--mmap_threshold_mb must be 0 to {MAX_MMAP_THRESHOLD_MB} (glibc's limit), got {cfg.mmap_threshold_mb}"
        )
    if cfg.control_judge and not cfg.eval_each_round:
        raise DetoxkitError("--control_judge is scored on the run's evaluation sets: it needs --eval_each_round")
    if cfg.eval_each_round and cfg.holdout_problematic + cfg.holdout_benign < 1:
        raise DetoxkitError(
            "--holdout_problematic and --holdout_benign are both 0: every round is scored on the reference-misses "
            "hold-out, so it needs rows (or pass --no-eval_each_round)"
        )
    prepare_output_dir(cfg)
    seed_everything(cfg.seed)
    fix_mmap_threshold(cfg.mmap_threshold_mb)
    t_setup = time.perf_counter()
    embedder = load_embedder(cfg.embedder)
    splits = run_splits(cfg, embedder)
    write_json(out / "splits.json", splits_summary(splits))
    judge, attacker = load_roles(cfg)
    oracle = build_oracle(cfg, splits, embedder, out)
    seeds = seed_data(splits, cfg.seed_problematic, cfg.seed_benign, cfg.seed, cfg.rounds, cfg.seeds_per_round)
    start_log(out, seeds)
    evaluator = holdout_evaluator(cfg, out, splits) if cfg.eval_each_round else None
    setup_s = time.perf_counter() - t_setup
    summaries = run_loop(cfg, attacker, judge, oracle, embedder, out, evaluator)
    judge.save(out / "judge")
    result = {
        "setup_s": round(setup_s, 2),
        "rounds": summaries,
        "oracle": oracle.name,
        "shared_base": judge.model is attacker.model,
    }
    if cfg.eval_each_round:
        from .evaluate import generated_overlaps

        found = generated_overlaps(
            read_jsonl(out / "prompts.jsonl"), read_jsonl(out / "holdout.jsonl"), embedder, cfg.leak_threshold
        )
        write_json(out / "splits.json", {**splits_summary(splits), "overlaps_generated": found})
    if cfg.control_judge:
        from .control import run_control

        del judge, attacker
        seed_everything(cfg.seed)
        # a fresh reference: same base, template and adapter initialisation; evaluated on the same sets
        control, _ = load_roles(cfg, with_attacker=False)
        control_eval = holdout_evaluator(cfg, out, splits, "eval_control.jsonl")
        result["control"] = run_control(cfg, read_jsonl(out / "prompts.jsonl"), splits, control, control_eval, out=out)
    result["peak_rss_mb"] = run_peak_rss_mb(out)
    write_json(out / "run_summary.json", result)
    return result


def run_peak_rss_mb(out: Path) -> float:
    """The whole run's peak RSS: this process's (the control judge's fine-tunes and scoring included) and, for a
    resumed run, the peaks its stopped processes logged at the end of each round (round_done rows). A stopped
    process's peak after its last round_done row is not known (the resumed process redoes what was not
    checkpointed, so its own peak stands for most of it)."""
    from ..runs import read_jsonl

    logged = [r.get("peak_rss_mb") for r in read_jsonl(out / "prompts.jsonl") if r.get("type") == "round_done"]
    return max([peak_rss_mb(), *(m for m in logged if m is not None)])


def summary(cfg, result: dict) -> str:
    fooled = [s["fooled"] / max(s["oracle_problematic"], 1) for s in result["rounds"]]
    out = cfg.output_dir
    return (
        f"adversarial run: {len(result['rounds'])} rounds in {out}, attacker success per round "
        f'{", ".join(f"{f:.2f}" for f in fooled)}; judge in {out}/judge (`detoxkit judge --judge {out} "prompt"`)'
    )


RUN = Recipe(AdversarialRunConfig, run, summary)
