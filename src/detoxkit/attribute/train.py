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

from ..config import Recipe
from ..core.logprobs import token_logprobs
from ..core.nado import guided_logprobs, nado_loss, token_kl
from ..errors import DetoxkitError
from ..lm.batch import pair_batch
from ..lm.score import completion_logprobs
from ..runs import progress
from ..training import batch_indices
from .config import AttributeTrainConfig
from .sampling import sample_continuations

SAMPLING_METHODS = ("rl", "regularized")


class Corpus:
    """Tokenised training texts, their toxicity, and the per-row regulariser weight (the toxicity when adaptive and
    weighting; which rows are regularised is decided by the toxicity alone)."""

    def __init__(
        self,
        rows: list[dict],
        tokenizer,
        scores: list[float],
        max_length: int,
        prompt_tokens: int,
        truncate_left: bool = False,
        adaptive: bool = False,
        min_weight: float = 0.0,
        weighting: bool = True,
    ):
        side = tokenizer.truncation_side
        # A classification row ends in its answer: cut long comments from the left so the answer survives.
        tokenizer.truncation_side = "left" if truncate_left else "right"
        try:
            self.ids = [
                tokenizer(r["text"], add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
                for r in rows
            ]
        finally:
            tokenizer.truncation_side = side
        self.rows, self.scores, self.adaptive = rows, scores, adaptive
        self.prompt_ids = [ids[: max(1, min(prompt_tokens, len(ids) - 1))] for ids in self.ids]
        self.weights = list(scores) if adaptive and weighting else [1.0] * len(rows)
        self.min_weight = min_weight if adaptive else 0.0

    def __len__(self):
        return len(self.ids)

    def reg_rows(self, idx: list[int], k: int) -> list[int]:
        """Which of a step's rows get the regulariser: the k most toxic above the floor (adaptive), else the first k."""
        if not self.adaptive:
            return list(idx)[:k]
        return sorted([i for i in idx if self.scores[i] >= self.min_weight], key=lambda i: -self.scores[i])[:k]


def draw_samples(
    model,
    tokenizer,
    scorer,
    corpus: Corpus,
    plan: dict[int, list[int]],
    cfg,
    iteration: int,
    pad_id: int,
    stop_ids: set[int],
) -> dict[int, list[dict]]:
    """{step: [{row, prompt, conts, tox}]} for the planned (step -> rows) prompts; seeded by the iteration."""
    order = [(s, i) for s, rows in sorted(plan.items()) for i in rows]
    if not order:
        return {s: [] for s in plan}
    prompts = [corpus.prompt_ids[i] for _, i in order for _ in range(cfg.samples_per_prompt)]
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + iteration)
    conts = sample_continuations(
        model, prompts, cfg.max_new_tokens, pad_id, stop_ids, gen, top_p=cfg.top_p, batch_size=32
    )
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in conts]
    tox = scorer(texts)
    out: dict[int, list[dict]] = {s: [] for s in plan}
    k = cfg.samples_per_prompt
    for j, (s, i) in enumerate(order):
        out[s].append(
            {
                "row": i,
                "prompt": corpus.prompt_ids[i],
                "conts": conts[j * k : (j + 1) * k],
                "texts": texts[j * k : (j + 1) * k],
                "tox": [float(t) for t in tox[j * k : (j + 1) * k]],
            }
        )
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


def method_term(
    model, nado, entries: list[dict], weights: list[float], cfg, pad_id: int, teacher=None
) -> tuple[torch.Tensor, dict]:
    """The method's extra loss on one step's samples: λ·Σ w·KL(q*‖p_θ) (regularized) or the RL push-down.

    teacher (regularized): the model that drew the samples R was trained on. q* ∝ p_teacher·R is the I-projection
    R estimates; building it from the current p_θ instead would pull p_θ towards p_θ·R at every step, which
    compounds to p·Rⁿ and has no fixed point at q*."""
    device = next(model.parameters()).device
    ids, attn, cmask = (t.to(device) for t in continuation_batch(entries, pad_id))
    full = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
    logits = full[:, :-1]  # position t predicts token t+1
    m = cmask[:, 1:].float()
    n_tok = m.sum(-1).clamp(min=1)
    if cfg.method == "regularized":
        if teacher is None:
            raise ValueError("method_term: the regularized method needs the teacher (the sampling snapshot)")
        with torch.no_grad():
            r, _ = nado(ids, attn)
            p_teacher = teacher(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1]
            target = guided_logprobs(p_teacher, r[:, :-1], cfg.guidance_strength)
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
        raise DetoxkitError(
            f"--max_steps ({cfg.max_steps}) must be a multiple of --steps_per_iteration "
            f"({cfg.steps_per_iteration}) for rl and regularized: samples are drawn per iteration"
        )
    if cfg.method in SAMPLING_METHODS and cfg.schedule == "parallel" and world > 1:
        raise DetoxkitError(
            "--schedule parallel runs in one process; use --schedule sequential under "
            "`accelerate launch` with several processes"
        )
    if cfg.adaptive and cfg.method != "regularized":
        raise DetoxkitError("--adaptive applies to --method regularized only")


class AttributeTrainer:
    """One run of the recipe: setup (corpus, model, NADO, optimizers), resume, then iteration after iteration of
    sample -> NADO -> fine-tune (see the module docstring for the two schedules), checkpointed at each end."""

    def __init__(self, cfg, scorer=None):
        from accelerate import Accelerator

        from ..lm.batch import pad_id
        from ..lm.generate import stop_ids
        from ..lm.load import load_model, load_tokenizer
        from ..runs import prepare_output_dir, seed_everything
        from ..scorers import load_scorer
        from .nado import NadoModel

        self.cfg = cfg
        self.accelerator = Accelerator(cpu=cfg.device == "cpu")
        acc = self.accelerator
        self.world, self.rank, self.main = acc.num_processes, acc.process_index, acc.is_main_process
        _check(cfg, self.world)
        seed_everything(cfg.seed)
        self.out = prepare_output_dir(cfg) if self.main else Path(cfg.output_dir)
        self.tok = load_tokenizer(cfg.model_name_or_path)
        self.pad = pad_id(self.tok)
        self.scorer = scorer or load_scorer(cfg.scorer)
        self.corpus, self.data_report = self._corpus()
        model = load_model(cfg.model_name_or_path, cfg.dtype)
        self.stop = stop_ids(model, self.tok)
        self.sampling = cfg.method in SAMPLING_METHODS
        self.parallel = self.sampling and cfg.schedule == "parallel"
        self.nado = NadoModel.from_base(model, cfg.nado_layers, prior=0.5) if cfg.method == "regularized" else None
        # The regulariser's q* is built from the model that drew the samples, frozen: a snapshot, refreshed per iteration.
        self.teacher = copy.deepcopy(model).requires_grad_(False).eval() if self.nado is not None else None
        self.sampler_tensors = None  # the parallel sampler's weights from a checkpoint, to restore on resume
        self.workers = None
        self.nado_opt = (
            torch.optim.AdamW([p for p in self.nado.parameters() if p.requires_grad], lr=cfg.nado_learning_rate)
            if self.nado is not None
            else None
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.unwrapped = acc.unwrap_model(self.model)
        if self.nado is not None:
            self.nado = self.nado.to(acc.device)
        self.state = {"history": [], "next_samples": None}  # next_samples: the parallel schedule's background output
        self.step = self.iteration = 0
        self.log_path = self.out / "samples.jsonl"

    def _corpus(self) -> tuple[Corpus, dict]:
        import json

        from ..runs import write_json
        from .data import training_texts

        cfg = self.cfg
        rows, report = training_texts(
            cfg.train_dataset,
            cfg.task,
            cfg.max_train_samples,
            cfg.seed,
            cfg.data_dir,
            cfg.text_column,
            cfg.label_column,
        )
        scores_path = self.out / "corpus_scores.json"
        if scores_path.is_file():  # scoring the corpus is the slowest part of a resume: do it once per run
            scores = json.loads(scores_path.read_text())
        else:
            scores = [float(s) for s in self.scorer([r["text"] for r in rows])]
            if self.main:
                write_json(scores_path, scores)
        if cfg.method == "filtration":
            kept = [k for k, s in enumerate(scores) if s < cfg.filter_threshold]
            report["filtered_out"] = len(rows) - len(kept)
            rows, scores = [rows[k] for k in kept], [scores[k] for k in kept]
            if not rows:
                raise DetoxkitError(f"filtration removed every training text (threshold {cfg.filter_threshold})")
        corpus = Corpus(
            rows,
            self.tok,
            scores,
            cfg.max_length,
            cfg.prompt_tokens,
            truncate_left=cfg.task == "classification",
            adaptive=cfg.adaptive,
            min_weight=cfg.adaptive_min_weight,
            weighting=cfg.adaptive_weighting,
        )
        return corpus, report

    def _optimizers(self) -> dict:
        return {"optimizer": self.optimizer, **({"nado_optimizer": self.nado_opt} if self.nado_opt else {})}

    def resume(self) -> None:
        from ..training import load_trainable_tensors, resume, trim_log

        found = resume(self.out, self.cfg.resume_from_checkpoint, self._optimizers())
        if found is not None:
            tensors, saved = found
            load_trainable_tensors(self.unwrapped, tensors["model"], saved.pop("path"))
            if self.nado is not None:
                self.nado.load_state_dict(tensors["nado"])
            self.sampler_tensors = tensors.get("sampler")
            self.step = saved.pop("step")
            self.state.update(saved)
            self.iteration = self.step // self.cfg.steps_per_iteration
        if self.main:
            trim_log(self.log_path, lambda r: r["iteration"] < self.iteration)

    def plan_for(self, it: int) -> dict[int, list[int]]:
        cfg = self.cfg
        # Not cut at max_steps: a run stopped early and resumed with more steps must find the same samples.
        steps = range(it * cfg.steps_per_iteration, (it + 1) * cfg.steps_per_iteration)
        return {s: self.corpus.reg_rows(self._batch(s), cfg.reg_batch_size) for s in steps}

    def _batch(self, step: int) -> list[int]:
        return batch_indices(step, len(self.corpus), self.cfg.per_device_train_batch_size * self.world, self.cfg.seed)[
            self.rank :: self.world
        ]

    def sample_stage(self, sampler_model, it: int) -> tuple[dict, float]:
        t0 = time.perf_counter()
        samples = draw_samples(
            sampler_model, self.tok, self.scorer, self.corpus, self.plan_for(it), self.cfg, it, self.pad, self.stop
        )
        if self.world > 1:
            from accelerate.utils import gather_object

            merged: dict[int, list[dict]] = {}
            for part in gather_object([samples]):
                for s, entries in part.items():
                    merged.setdefault(s, []).extend(entries)
            samples = merged
        return samples, time.perf_counter() - t0

    def nado_stage(self, samples, it: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        loss = train_nado(self.nado, self.nado_opt, samples, self.cfg, it, self.pad) if self.nado else float("nan")
        return loss, time.perf_counter() - t0

    def log_samples(self, samples, it: int, for_it: int) -> None:
        from ..runs import append_jsonl

        if self.main:
            append_jsonl(
                self.log_path,
                [
                    {
                        "iteration": it,
                        "for_iteration": for_it,
                        "step": s,
                        "row": e["row"],
                        "prompt": self.tok.decode(e["prompt"]),
                        "continuation": t,
                        "toxicity": x,
                    }
                    for s, entries in sorted(samples.items())
                    for e in entries
                    for t, x in zip(e["texts"], e["tox"])
                ],
            )

    def prepare_samples(self, rec: dict, workers) -> tuple[dict, object, object]:
        """This iteration's samples (drawn now, or by the last iteration's background job) and the NADO that guides
        them; in the parallel schedule, the background job that draws the next iteration's."""
        it, future = self.iteration, None
        if not self.parallel or self.state["next_samples"] is None:  # sequential, or the parallel bootstrap
            drawer = self.unwrapped
            if self.teacher is not None:  # before the model moves on: it is the one that draws these samples
                self.teacher.load_state_dict(drawer.state_dict())
            samples, rec["sample_seconds"] = self.sample_stage(drawer, it)
            self.log_samples(samples, it, it)
            rec["nado_loss"], rec["nado_seconds"] = self.nado_stage(samples, it)
        else:
            samples = {int(s): v for s, v in self.state["next_samples"].items()}
            if self.teacher is not None:  # drawn by the sampler snapshot of the last iteration
                self.teacher.load_state_dict(workers.sampler.state_dict())
        if self.parallel:  # the last iteration too, so its checkpoint can be resumed with more steps
            workers.sampler.load_state_dict(self.unwrapped.state_dict())
            if workers.nado is not None:
                workers.nado.load_state_dict(self.nado.state_dict())
            future = workers.submit(self, it + 1)
        rec["sample_toxicity"] = _mean([t for v in samples.values() for e in v for t in e["tox"]])
        rec["sample_toxic_rate"] = _mean(
            [t >= self.cfg.filter_threshold for v in samples.values() for e in v for t in e["tox"]]
        )
        return samples, workers.nado if self.parallel else self.nado, future

    def finetune(self, samples: dict, guide, bar) -> dict:
        """The iteration's model steps: task loss plus the method's term on each step's samples."""
        cfg = self.cfg
        sums = {"task_loss": 0.0, "term": 0.0, "kl": 0.0, "n": 0}
        first = self.iteration * cfg.steps_per_iteration
        for s in range(first, min(first + cfg.steps_per_iteration, cfg.max_steps)):
            if s < self.step:
                continue
            self.model.train()
            loss = task_loss(self.model, self.corpus, self._batch(s), self.pad)
            sums["task_loss"] += loss.item()
            if self.sampling and samples.get(s):
                entries = samples[s]
                # The inner module for the second forward: DDP allows one wrapped forward per backward.
                weights = [self.corpus.weights[e["row"]] for e in entries]
                term, info = method_term(self.unwrapped, guide, entries, weights, cfg, self.pad, self.teacher)
                loss = loss + term
                sums["term"] += term.item()
                sums["kl"] += info.get("kl", 0.0)
            self.accelerator.backward(loss)
            if cfg.max_grad_norm:
                self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step, sums["n"] = s + 1, sums["n"] + 1
            if self.main:
                bar.update(1)
                bar.set_postfix(loss=f"{sums['task_loss'] / sums['n']:.3f}")
        return sums

    def checkpoint(self) -> None:
        from ..runs import save_checkpoint
        from ..training import trainable_tensors

        self.accelerator.wait_for_everyone()
        if self.main:
            tensors = {
                "model": trainable_tensors(self.unwrapped),
                **({"nado": self.nado.state_dict()} if self.nado is not None else {}),
                # the weights that drew next_samples: on resume they are the regulariser's teacher again
                **(
                    {"sampler": dict(self.workers.sampler.named_parameters())}
                    if self.parallel and self.teacher is not None
                    else {}
                ),
            }
            save_checkpoint(
                self.out, self.step, tensors, self.state, self._optimizers(), keep_last=self.cfg.save_total_limit
            )

    def run_iteration(self, workers, bar) -> None:
        t_it, rec = time.perf_counter(), {"iteration": self.iteration}
        samples, guide, future = self.prepare_samples(rec, workers) if self.sampling else ({}, None, None)
        t_ft = time.perf_counter()
        sums = self.finetune(samples, guide, bar)
        rec["finetune_seconds"] = time.perf_counter() - t_ft
        if future is not None:
            nxt, rec["sample_seconds"], rec["nado_loss"], rec["nado_seconds"] = workers.result(future)
            self.log_samples(nxt, self.iteration, self.iteration + 1)
            self.state["next_samples"] = nxt
        n = max(sums["n"], 1)
        rec.update(
            steps=self.step,
            task_loss=sums["task_loss"] / n,
            method_loss=sums["term"] / n,
            kl=sums["kl"] / n if self.cfg.method == "regularized" else None,
            seconds=time.perf_counter() - t_it,
        )
        self.state["history"].append(rec)
        self.iteration += 1
        self.checkpoint()

    def train(self) -> dict:

        cfg = self.cfg
        self.resume()
        n_iter = -(-cfg.max_steps // cfg.steps_per_iteration)
        bar = progress(
            total=cfg.max_steps, initial=self.step, desc=f"attribute {cfg.method}", unit="step", disable=not self.main
        )
        t_run = time.perf_counter()
        with BackgroundSampler(self) as workers:
            self.workers = workers
            while self.iteration < n_iter:
                self.run_iteration(workers, bar)
        bar.close()
        return self.finish(time.perf_counter() - t_run)

    def finish(self, seconds: float) -> dict:
        from ..runs import atomic_dir, write_json

        cfg, hist = self.cfg, self.state["history"]
        metrics = {
            "method": cfg.method,
            "adaptive": cfg.adaptive,
            "schedule": cfg.schedule if self.sampling else None,
            "steps": self.step,
            "data": self.data_report,
            "seconds_this_session": seconds,
            "seconds_per_step": _mean([h["seconds"] / max(1, cfg.steps_per_iteration) for h in hist]),
            "history": hist,
        }
        if self.main:
            with atomic_dir(self.out / "final") as tmp:
                self.unwrapped.save_pretrained(tmp)
                self.tok.save_pretrained(tmp)
            if self.nado is not None:
                self.nado.meta.update(
                    base_model=cfg.model_name_or_path,
                    trained_for="final model's samples, one iteration stale"
                    if self.parallel
                    else "final model's samples",
                )
                self.nado.save_pretrained(self.out / "final" / "nado")
            write_json(self.out / "metrics.json", metrics)
        return metrics


class BackgroundSampler:
    """The parallel schedule's worker: a snapshot of the model (and of the NADO) that samples and trains the NADO
    for the next iteration in a thread while the model fine-tunes. Two stages at once share the cores: with both at
    the full thread count their OpenMP teams oversubscribe the machine and spin against each other, so each stage
    gets half the threads while both run."""

    def __init__(self, trainer: AttributeTrainer):
        self.enabled = trainer.parallel
        self.all_threads = torch.get_num_threads()
        self.stage_threads = max(1, self.all_threads // 2)
        self.pool = ThreadPoolExecutor(max_workers=1) if self.enabled else None
        self.sampler = copy.deepcopy(trainer.unwrapped).requires_grad_(False) if self.enabled else None
        if self.sampler is not None and trainer.sampler_tensors is not None:
            with torch.no_grad():  # named_parameters (tied weights once): what the checkpoint stored
                for n, p in self.sampler.named_parameters():
                    p.copy_(trainer.sampler_tensors[n])
        self.nado = (
            copy.deepcopy(trainer.nado).requires_grad_(False) if self.enabled and trainer.nado is not None else None
        )

    def submit(self, trainer: AttributeTrainer, it: int):
        def background():
            torch.set_num_threads(self.stage_threads)
            s, t_s = trainer.sample_stage(self.sampler, it)
            loss, t_n = trainer.nado_stage(s, it)
            return s, t_s, loss, t_n

        future = self.pool.submit(background)
        torch.set_num_threads(self.stage_threads)
        return future

    def result(self, future):
        out = future.result()
        torch.set_num_threads(self.all_threads)
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        torch.set_num_threads(self.all_threads)


def train(cfg, scorer=None) -> dict:
    """Run the recipe; `scorer` (texts -> toxicity) overrides cfg.scorer (tests, benchmarks)."""
    return AttributeTrainer(cfg, scorer).train()


def summary(cfg, m: dict) -> str:
    last = m["history"][-1] if m["history"] else {}
    tox = (
        f", self-sample toxic rate {last['sample_toxic_rate']:.3f}" if last.get("sample_toxic_rate") is not None else ""
    )
    return (
        f"attribute train: {m['steps']} steps ({cfg.method}{', adaptive' if cfg.adaptive else ''}), last task loss "
        f"{last.get('task_loss', float('nan')):.4f}{tox}, {m['seconds_per_step']:.2f} s/step; model in "
        f"{Path(cfg.output_dir) / 'final'}"
    )


TRAIN = Recipe(AttributeTrainConfig, train, summary)


def _mean(xs) -> float | None:
    xs = [float(x) for x in xs]
    return sum(xs) / len(xs) if xs else None
