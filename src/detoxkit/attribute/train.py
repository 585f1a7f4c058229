"""`detoxkit attribute train` and `nado-train`: the regularised fine-tuning loop, its schedules and baselines.

TRL has no trainer for "language-model loss on a corpus + a KL towards a target built from a second model
that is itself trained on the model's own labelled samples", so this is a small loop on a plain
`accelerate.Accelerator`. Work comes in iterations of `steps_per_iteration` model steps; every stage is a
pure function of (seed, step or iteration), so a run resumed from an iteration's checkpoint repeats an
uninterrupted one exactly:
  sample   continuations of the prompts the iteration's steps will regularise (prefixes of their training
           texts), from a snapshot of the model, labelled by the scorer;
  nado     R trained on those labelled samples;
  finetune task loss on each step's batch + the method's term on that step's samples.
Sequential runs the three in order; parallel runs sample+nado for iteration i+1 in a background thread while
iteration i fine-tunes on what the previous iteration's thread produced (torch releases the GIL inside
its kernels, so the two overlap on spare cores; sampling at small batch leaves most of a core idle).
"""

from __future__ import annotations

import copy
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..core.logprobs import token_logprobs
from ..core.nado import guided_logprobs, nado_loss, token_kl
from ..errors import DetoxkitError
from ..runs import progress
from ..training import batch_indices
from ..lm.batch import pair_batch
from ..lm.score import completion_logprobs
from .sampling import sample_continuations

SAMPLING_METHODS = ("rl", "regularized")


class Corpus:
    """Tokenised training texts, their toxicity, and the per-row regulariser weight (the toxicity when adaptive)."""

    def __init__(self, rows: list[dict], tokenizer, scores: list[float], max_length: int, prompt_tokens: int,
                 truncate_left: bool = False, adaptive: bool = False, min_weight: float = 0.0):
        side = tokenizer.truncation_side
        # A classification row ends in its answer: cut long comments from the left so the answer survives.
        tokenizer.truncation_side = "left" if truncate_left else "right"
        try:
            self.ids = [tokenizer(r["text"], add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
                        for r in rows]
        finally:
            tokenizer.truncation_side = side
        self.rows, self.scores, self.adaptive = rows, scores, adaptive
        self.prompt_ids = [ids[: max(1, min(prompt_tokens, len(ids) - 1))] for ids in self.ids]
        self.weights = list(scores) if adaptive else [1.0] * len(rows)
        self.min_weight = min_weight if adaptive else 0.0

    def __len__(self):
        return len(self.ids)

    def reg_rows(self, idx: list[int], k: int) -> list[int]:
        """Which of a step's rows get the regulariser: the k most toxic above the floor (adaptive), else the first k."""
        if not self.adaptive:
            return list(idx)[:k]
        return sorted([i for i in idx if self.weights[i] >= self.min_weight], key=lambda i: -self.weights[i])[:k]


def draw_samples(model, tokenizer, scorer, corpus: Corpus, plan: dict[int, list[int]], cfg, iteration: int,
                 pad_id: int, stop_ids: set[int]) -> dict[int, list[dict]]:
    """{step: [{row, prompt, conts, tox}]} for the planned (step -> rows) prompts; seeded by the iteration."""
    order = [(s, i) for s, rows in sorted(plan.items()) for i in rows]
    if not order:
        return {s: [] for s in plan}
    prompts = [corpus.prompt_ids[i] for _, i in order for _ in range(cfg.samples_per_prompt)]
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + iteration)
    conts = sample_continuations(model, prompts, cfg.max_new_tokens, pad_id, stop_ids, gen, top_p=cfg.top_p,
                                 batch_size=32)
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in conts]
    tox = scorer(texts)
    out: dict[int, list[dict]] = {s: [] for s in plan}
    k = cfg.samples_per_prompt
    for j, (s, i) in enumerate(order):
        out[s].append({"row": i, "prompt": corpus.prompt_ids[i], "conts": conts[j * k : (j + 1) * k],
                       "texts": texts[j * k : (j + 1) * k], "tox": [float(t) for t in tox[j * k : (j + 1) * k]]})
    return out


def continuation_batch(entries: list[dict], pad_id: int, which: int | None = 0):
    """(ids, attention, continuation mask) of prompt+continuation rows; which=None takes every continuation."""
    pairs = [(e["prompt"], c) for e in entries for c in (e["conts"] if which is None else [e["conts"][which]])]
    return pair_batch([p for p, _ in pairs], [c for _, c in pairs], pad_id)


def train_nado(nado, optimizer, samples: dict[int, list[dict]], cfg, iteration: int, pad_id: int) -> float:
    """nado_epochs passes of BCE over every labelled continuation; label = 1 - toxicity (soft).

    The first iteration first sets R's constant to the samples' mean label, so the head learns how tokens
    differ from the base rate instead of spending its first updates finding the base rate."""
    entries = [e for rows in samples.values() for e in rows]
    seqs = [(e["prompt"], c, 1.0 - t) for e in entries for c, t in zip(e["conts"], e["tox"])]
    if not seqs:
        return float("nan")
    if iteration == 0:
        nado.set_prior(sum(lab for *_, lab in seqs) / len(seqs))
    rng = random.Random(cfg.seed * 7_919 + iteration)
    nado.train()
    losses = []
    for _ in range(cfg.nado_epochs):
        order = list(range(len(seqs)))
        rng.shuffle(order)
        for s in range(0, len(order), cfg.nado_batch_size):
            chunk = [seqs[j] for j in order[s : s + cfg.nado_batch_size]]
            ids, attn, cmask = continuation_batch([{"prompt": p, "conts": [c]} for p, c, _ in chunk], pad_id)
            device = next(nado.parameters()).device
            labels = torch.tensor([lab for *_, lab in chunk], device=device)
            loss = nado_loss(nado.selected_logits(ids.to(device), attn.to(device)), labels, cmask[:, 1:].to(device))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
    nado.eval()
    return sum(losses) / len(losses)


def method_term(model, nado, entries: list[dict], weights: list[float], cfg, pad_id: int) -> tuple[torch.Tensor, dict]:
    """The method's extra loss on one step's samples: λ·Σ w·KL(q*‖p_θ) (regularized) or the RL push-down."""
    device = next(model.parameters()).device
    ids, attn, cmask = (t.to(device) for t in continuation_batch(entries, pad_id))
    full = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
    logits = full[:, :-1]  # position t predicts token t+1
    m = cmask[:, 1:].float()
    n_tok = m.sum(-1).clamp(min=1)
    if cfg.method == "regularized":
        with torch.no_grad():
            r, _ = nado(ids, attn)
            # q* from the model's own current distribution (detached): one model copy, and the target is the
            # I-projection of the very p_θ being regularised rather than of a stale snapshot.
            target = guided_logprobs(logits.detach(), r[:, :-1], cfg.guidance_strength)
        per_seq = (token_kl(target, logits) * m).sum(-1) / n_tok
        w = torch.tensor(weights, device=device)
        return cfg.reg_lambda * (w * per_seq).mean(), {"kl": per_seq.mean().item()}
    lp = (token_logprobs(full, ids) * m).sum(-1) / n_tok
    toxic = torch.tensor([e["tox"][0] >= cfg.filter_threshold for e in entries], device=device, dtype=lp.dtype)
    return cfg.rl_coef * (toxic * lp).mean(), {"toxic_samples": int(toxic.sum().item())}


def task_loss(model, corpus: Corpus, idx: list[int], pad_id: int) -> torch.Tensor:
    """The language-model loss of a batch of texts: mean NLL per token (every token after the first)."""
    texts = [corpus.ids[i] for i in idx]
    total = completion_logprobs(model, [t[:1] for t in texts], [t[1:] for t in texts], pad_id).sum()
    return -total / max(1, sum(len(t) - 1 for t in texts))


def _check(cfg, world: int) -> None:
    if cfg.max_steps < 1 or cfg.steps_per_iteration < 1 or cfg.per_device_train_batch_size < 1:
        raise DetoxkitError("--max_steps, --steps_per_iteration and --per_device_train_batch_size must be at least 1")
    if cfg.method in SAMPLING_METHODS and (cfg.reg_batch_size < 1 or cfg.samples_per_prompt < 1):
        raise DetoxkitError("--reg_batch_size and --samples_per_prompt must be at least 1 for rl and regularized")
    if cfg.method in SAMPLING_METHODS and cfg.max_steps % cfg.steps_per_iteration:
        raise DetoxkitError(f"--max_steps ({cfg.max_steps}) must be a multiple of --steps_per_iteration "
                            f"({cfg.steps_per_iteration}) for rl and regularized: samples are drawn per iteration")
    if cfg.method in SAMPLING_METHODS and cfg.schedule == "parallel" and world > 1:
        raise DetoxkitError("--schedule parallel runs in one process; use --schedule sequential under "
                            "`accelerate launch` with several processes")
    if cfg.adaptive and cfg.method != "regularized":
        raise DetoxkitError("--adaptive applies to --method regularized only")


def train(cfg, scorer=None) -> dict:
    """Run the recipe; `scorer` (texts -> toxicity) overrides cfg.scorer (tests, benchmarks)."""
    from accelerate import Accelerator

    from ..lm.load import load_model, load_tokenizer
    from ..lm.generate import stop_ids as eos_ids
    from ..runs import (append_jsonl, load_checkpoint, prepare_output_dir, read_jsonl, resolve_resume, save_checkpoint,
                        seed_everything, write_json)
    from ..scorers import load_scorer as load_screener
    from ..training import load_trainable_tensors, trainable_tensors
    from .data import training_texts
    from .nado import NadoModel

    accelerator = Accelerator()
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    _check(cfg, world)
    seed_everything(cfg.seed)
    out = prepare_output_dir(cfg) if main else Path(cfg.output_dir)
    tok = load_tokenizer(cfg.model_name_or_path)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows, data_report = training_texts(cfg.train_dataset, cfg.task, cfg.max_train_samples, cfg.seed, cfg.data_dir,
                                       cfg.text_column, cfg.label_column)
    scorer = scorer or load_screener(cfg.scorer)
    scores_path = out / "corpus_scores.json"
    if scores_path.is_file():  # scoring the corpus is the slowest part of a resume: do it once per run
        import json

        scores = json.loads(scores_path.read_text())
    else:
        scores = [float(s) for s in scorer([r["text"] for r in rows])]
        if main:
            write_json(scores_path, scores)
    if cfg.method == "filtration":
        kept = [k for k, s in enumerate(scores) if s < cfg.filter_threshold]
        data_report["filtered_out"] = len(rows) - len(kept)
        rows, scores = [rows[k] for k in kept], [scores[k] for k in kept]
        if not rows:
            raise DetoxkitError(f"filtration removed every training text (threshold {cfg.filter_threshold})")
    corpus = Corpus(rows, tok, scores, cfg.max_length, cfg.prompt_tokens, truncate_left=cfg.task == "classification",
                    adaptive=cfg.adaptive, min_weight=cfg.adaptive_min_weight)

    model = load_model(cfg.model_name_or_path)
    stop = eos_ids(model, tok)
    sampling = cfg.method in SAMPLING_METHODS
    nado = NadoModel.from_base(model, cfg.nado_layers, prior=0.5) if cfg.method == "regularized" else None
    nado_opt = (torch.optim.AdamW([p for p in nado.parameters() if p.requires_grad], lr=cfg.nado_learning_rate)
                if nado is not None else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    if nado is not None:
        nado = nado.to(accelerator.device)

    state = {"history": [], "next_samples": None}  # next_samples: the parallel schedule's background output
    step, iteration = 0, 0
    resume = resolve_resume(out, cfg.resume_from_checkpoint)
    if resume is not None:
        opts = {"optimizer": optimizer, **({"nado_optimizer": nado_opt} if nado_opt else {})}
        tensors, saved = load_checkpoint(resume, opts)
        load_trainable_tensors(unwrapped, tensors["model"], resume)
        if nado is not None:
            nado.load_state_dict(tensors["nado"])
        step = saved.pop("step")
        state.update(saved)
        iteration = step // cfg.steps_per_iteration
    log_path = out / "samples.jsonl"
    if main:
        kept_log = [r for r in read_jsonl(log_path) if r["iteration"] < iteration]
        log_path.unlink(missing_ok=True)
        append_jsonl(log_path, kept_log)

    batch_size = cfg.per_device_train_batch_size
    n_iter = -(-cfg.max_steps // cfg.steps_per_iteration)

    def plan_for(it: int) -> dict[int, list[int]]:
        # Not cut at max_steps: a run stopped early and resumed with more steps must find the same samples.
        steps = range(it * cfg.steps_per_iteration, (it + 1) * cfg.steps_per_iteration)
        return {s: corpus.reg_rows(batch_indices(s, len(corpus), batch_size * world, cfg.seed)[rank::world],
                                   cfg.reg_batch_size) for s in steps}

    def sample_stage(sampler_model, it: int) -> tuple[dict, float]:
        t0 = time.perf_counter()
        samples = draw_samples(sampler_model, tok, scorer, corpus, plan_for(it), cfg, it, pad, stop)
        if world > 1:
            from accelerate.utils import gather_object

            merged: dict[int, list[dict]] = {}
            for part in gather_object([samples]):
                for s, entries in part.items():
                    merged.setdefault(s, []).extend(entries)
            samples = merged
        return samples, time.perf_counter() - t0

    def nado_stage(samples, it: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        loss = train_nado(nado, nado_opt, samples, cfg, it, pad) if nado is not None else float("nan")
        return loss, time.perf_counter() - t0

    def log_samples(samples, it: int, for_it: int):
        if main:
            append_jsonl(log_path, [{"iteration": it, "for_iteration": for_it, "step": s, "row": e["row"],
                                     "prompt": tok.decode(e["prompt"]), "continuation": t, "toxicity": x}
                                    for s, entries in sorted(samples.items()) for e in entries
                                    for t, x in zip(e["texts"], e["tox"])])

    parallel = sampling and cfg.schedule == "parallel"
    # Two stages at once share the cores: with both at the full thread count their OpenMP teams oversubscribe
    # the machine and spin against each other (measured 5-9x slower per forward on 2 cores).
    all_threads = torch.get_num_threads()
    stage_threads = max(1, all_threads // 2)
    pool = ThreadPoolExecutor(max_workers=1) if parallel else None
    sampler_model = copy.deepcopy(unwrapped).requires_grad_(False) if parallel else None
    frozen_nado = copy.deepcopy(nado).requires_grad_(False) if parallel and nado is not None else None
    bar = progress(total=cfg.max_steps, initial=step, desc=f"attribute {cfg.method}", unit="step", disable=not main)
    t_run = time.perf_counter()
    try:
        while iteration < n_iter:
            t_it = time.perf_counter()
            rec = {"iteration": iteration}
            future = None
            if sampling:
                if not parallel or state["next_samples"] is None:  # sequential, or the parallel bootstrap
                    samples, rec["sample_seconds"] = sample_stage(unwrapped, iteration)
                    log_samples(samples, iteration, iteration)
                    rec["nado_loss"], rec["nado_seconds"] = nado_stage(samples, iteration)
                else:
                    samples = {int(s): v for s, v in state["next_samples"].items()}
                if parallel:  # the last iteration too, so its checkpoint can be resumed with more steps
                    sampler_model.load_state_dict(unwrapped.state_dict())
                    if frozen_nado is not None:
                        frozen_nado.load_state_dict(nado.state_dict())

                    def background(it=iteration + 1):
                        torch.set_num_threads(stage_threads)
                        s, t_s = sample_stage(sampler_model, it)
                        loss, t_n = nado_stage(s, it)
                        return s, t_s, loss, t_n

                    future = pool.submit(background)
                    torch.set_num_threads(stage_threads)
                guide = frozen_nado if parallel else nado
                rec["sample_toxicity"] = _mean([t for v in samples.values() for e in v for t in e["tox"]])
                rec["sample_toxic_rate"] = _mean([t >= cfg.filter_threshold for v in samples.values() for e in v for t in e["tox"]])
            t_ft = time.perf_counter()
            sums = {"task_loss": 0.0, "term": 0.0, "kl": 0.0, "n": 0}
            for s in range(iteration * cfg.steps_per_iteration, min((iteration + 1) * cfg.steps_per_iteration, cfg.max_steps)):
                if s < step:
                    continue
                idx = batch_indices(s, len(corpus), batch_size * world, cfg.seed)[rank::world]
                model.train()
                loss = task_loss(model, corpus, idx, pad)
                sums["task_loss"] += loss.item()
                if sampling and samples.get(s):
                    entries = samples[s]
                    # The inner module for the second forward: DDP allows one wrapped forward per backward.
                    term, info = method_term(unwrapped, guide, entries, [corpus.weights[e["row"]] for e in entries], cfg, pad)
                    loss = loss + term
                    sums["term"] += term.item()
                    sums["kl"] += info.get("kl", 0.0)
                accelerator.backward(loss)
                if cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step = s + 1
                sums["n"] += 1
                if main:
                    bar.update(1)
                    bar.set_postfix(loss=f"{sums['task_loss'] / sums['n']:.3f}")
            rec["finetune_seconds"] = time.perf_counter() - t_ft
            if future is not None:
                nxt, rec["sample_seconds"], rec["nado_loss"], rec["nado_seconds"] = future.result()
                torch.set_num_threads(all_threads)
                log_samples(nxt, iteration, iteration + 1)
                state["next_samples"] = nxt
            n = max(sums["n"], 1)
            rec.update(steps=step, task_loss=sums["task_loss"] / n, method_loss=sums["term"] / n,
                       kl=sums["kl"] / n if cfg.method == "regularized" else None,
                       seconds=time.perf_counter() - t_it)
            state["history"].append(rec)
            iteration += 1
            accelerator.wait_for_everyone()
            if main:
                tensors = {"model": trainable_tensors(unwrapped), **({"nado": nado.state_dict()} if nado is not None else {})}
                opts = {"optimizer": optimizer, **({"nado_optimizer": nado_opt} if nado_opt else {})}
                save_checkpoint(out, step, tensors, state, opts, keep_last=cfg.save_total_limit)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True)
        torch.set_num_threads(all_threads)
    seconds = time.perf_counter() - t_run
    hist = state["history"]
    metrics = {"method": cfg.method, "adaptive": cfg.adaptive, "schedule": cfg.schedule if sampling else None,
               "steps": step, "data": data_report, "seconds_this_session": seconds,
               "seconds_per_step": _mean([h["seconds"] / max(1, cfg.steps_per_iteration) for h in hist]),
               "history": hist}
    if main:
        from ..runs import atomic_dir

        with atomic_dir(out / "final") as tmp:
            unwrapped.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        if nado is not None:
            nado.meta.update(base_model=cfg.model_name_or_path, trained_for="final model's samples, one iteration stale"
                             if parallel else "final model's samples")
            nado.save_pretrained(out / "final" / "nado")
        write_json(out / "metrics.json", metrics)
    return metrics


def _mean(xs) -> float | None:
    xs = [float(x) for x in xs]
    return sum(xs) / len(xs) if xs else None


def train_nado_only(cfg, scorer=None) -> dict:
    """`detoxkit attribute nado-train`: R for a frozen model from its own labelled samples."""
    from ..lm.load import load_model, load_tokenizer
    from ..runs import append_jsonl, prepare_output_dir, seed_everything, write_json
    from ..lm.generate import stop_ids as eos_ids
    from ..scorers import load_scorer as load_screener
    from .data import training_texts
    from .nado import NadoModel

    seed_everything(cfg.seed)
    out = prepare_output_dir(cfg)
    tok = load_tokenizer(cfg.model_name_or_path)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows, _ = training_texts(cfg.train_dataset, "lm", cfg.max_train_samples, cfg.seed, cfg.data_dir, cfg.text_column)
    scorer = scorer or load_screener(cfg.scorer)
    corpus = Corpus(rows, tok, [0.0] * len(rows), max_length=cfg.prompt_tokens + 1, prompt_tokens=cfg.prompt_tokens)
    model = load_model(cfg.model_name_or_path)
    stop = eos_ids(model, tok)
    nado = NadoModel.from_base(model, cfg.nado_layers)
    opt = torch.optim.AdamW([p for p in nado.parameters() if p.requires_grad], lr=cfg.nado_learning_rate)
    rng = random.Random(cfg.seed)
    history = []
    for it in progress(range(cfg.iterations), desc="nado-train", unit="round"):
        plan = {0: rng.sample(range(len(corpus)), min(cfg.prompts_per_iteration, len(corpus)))}
        samples = draw_samples(model, tok, scorer, corpus, plan, cfg, it, pad, stop)
        loss = train_nado(nado, opt, samples, cfg, it, pad)
        tox = [t for e in samples[0] for t in e["tox"]]
        history.append({"iteration": it, "nado_loss": loss, "sample_toxicity": _mean(tox)})
        append_jsonl(out / "samples.jsonl", [{"iteration": it, "prompt": tok.decode(e["prompt"]), "continuation": t,
                                              "toxicity": x} for e in samples[0] for t, x in zip(e["texts"], e["tox"])])
    nado.meta.update(base_model=cfg.model_name_or_path)
    nado.save_pretrained(out / "nado")
    metrics = {"iterations": cfg.iterations, "history": history}
    write_json(out / "metrics.json", metrics)
    return metrics
