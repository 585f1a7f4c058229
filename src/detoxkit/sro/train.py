"""`detoxkit sro train`: the online SRO loop (generate -> screen -> loss every step).

TRL's trainers are offline (DPO/KTO read a fixed dataset) or reward-based (GRPO/RLOO); none can express
"generate, ask a binary screener, then take a DPO step with the *input* as the rejected response or a
push-down step when the screener fails the paraphrase". So this is a small loop of its own on a plain
`accelerate.Accelerator` (it runs under `accelerate launch`; each process takes a slice of every batch).

Reference log-probs never change (the reference is frozen), so each is computed once: the toxic input's
when the input is first drawn (cached for later epochs and in checkpoints), the paraphrase's when it is
generated. The policy then needs one forward/backward over [paraphrases; inputs] per step.
The data order and the verdict flips are pure functions of (seed, step), so a resumed run repeats an
uninterrupted one exactly.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from ..config import Recipe
from ..errors import DetoxkitError
from .config import SroTrainConfig


def follower_verdicts(
    paraphrases: list[str],
    toxicity: list[float],
    similarity: list[float] | None,
    threshold: float,
    min_similarity: float,
) -> list[bool]:
    """The follower's raw verdicts: pass iff ŷ is non-empty, toxicity(ŷ) < threshold and (when similarities are
    given) cosine(x, ŷ) >= min_similarity. The similarity condition makes the follower screen for a detoxified
    *paraphrase*: a clean but off-topic ŷ fails, so the fail branch pushes it down instead of DPO pulling it up."""
    sims = similarity if similarity is not None else [1.0] * len(paraphrases)
    return [bool(y) and t < threshold and s >= min_similarity for y, t, s in zip(paraphrases, toxicity, sims)]


def pick_candidate(verdicts: list[bool], similarity: list[float] | None) -> int:
    """Which of an input's k screened paraphrases the loss uses: the passing one most similar to the input (the
    most faithful detoxification, the best DPO 'chosen'), else the first (a plain sample, pushed down)."""
    passing = [c for c, v in enumerate(verdicts) if v]
    if not passing:
        return 0
    return max(passing, key=lambda c: similarity[c]) if similarity is not None else passing[0]


def verdict_flips(step: int, n: int, noise: float, seed: int) -> list[bool]:
    rng = random.Random(f"{seed}:{step}:feedback-noise")
    return [rng.random() < noise for _ in range(n)]


def screened_loss(
    loss_type: str, pol_y, ref_y, pol_x, ref_x, passed, beta: float, label_smoothing: float, fail_weight: float = 1.0
):
    """Per-example loss of one online batch for each loss_type (see SroTrainConfig)."""
    import torch

    from ..core.preference import dpo_loss, kto_loss, npo_loss, sro_loss

    if loss_type == "kto":
        return kto_loss(pol_y, ref_y, passed, beta)
    if loss_type == "npo":
        return torch.where(
            passed, dpo_loss(pol_y, pol_x, ref_y, ref_x, beta, label_smoothing), npo_loss(pol_y, ref_y, beta)
        )
    return sro_loss(
        pol_y,
        ref_y,
        pol_x,
        ref_x,
        passed,
        beta,
        label_smoothing,
        fail_weight=0.0 if loss_type == "dpo_pass_only" else fail_weight,
    )


def _check(cfg) -> None:
    if not 0.0 <= cfg.feedback_noise <= 1.0:
        raise DetoxkitError(f"--feedback_noise must be in [0, 1], got {cfg.feedback_noise}")
    if cfg.fail_weight < 0 or cfg.rpo_alpha < 0:
        raise DetoxkitError(f"--fail_weight and --rpo_alpha must be >= 0, got {cfg.fail_weight} and {cfg.rpo_alpha}")
    if not 0.0 <= cfg.screener_min_similarity <= 1.0:
        raise DetoxkitError(f"--screener_min_similarity must be in [0, 1], got {cfg.screener_min_similarity}")
    if cfg.max_steps < 1 or cfg.per_device_train_batch_size < 1 or cfg.num_generations < 1:
        raise DetoxkitError("--max_steps, --per_device_train_batch_size and --num_generations must be at least 1")
    if cfg.num_generations > 1 and not cfg.temperature > 0:
        raise DetoxkitError(
            f"--temperature must be > 0 to sample num_generations={cfg.num_generations}, got {cfg.temperature}"
        )
    if cfg.loss_type == "sft" and cfg.split_sentences:
        raise DetoxkitError("--split_sentences needs a screener; the sft baseline trains on whole references")


class SroTrainer:
    """One run of the recipe: setup (data, models, optimizer), resume, then one step at a time, evaluation and
    checkpoints. `screener` (texts -> scores), `similarity` ((inputs, outputs) -> cosines) and `evaluator` (a
    DetoxEvaluator) override the ones the config names (Python API, tests, benchmarks)."""

    def __init__(self, cfg, screener=None, evaluator=None, similarity=None):
        from accelerate import Accelerator

        from ..lm.batch import pad_id
        from ..lm.load import load_tokenizer
        from ..runs import prepare_output_dir, seed_everything
        from ..scorers import load_scorer

        _check(cfg)
        self.cfg, self.sft = cfg, cfg.loss_type == "sft"
        self.accelerator = Accelerator(cpu=cfg.device == "cpu")
        self.main, self.rank, self.world = (
            self.accelerator.is_main_process,
            self.accelerator.process_index,
            self.accelerator.num_processes,
        )
        seed_everything(cfg.seed)
        self.out = prepare_output_dir(cfg) if self.main else Path(cfg.output_dir)
        self.tok = load_tokenizer(cfg.model_name_or_path)
        self.pad, self.eos = pad_id(self.tok), self.tok.eos_token_id
        self.screener = screener if screener is not None or self.sft else load_scorer(cfg.screener, "screener")
        self._load_rows()
        self.similarity = (
            similarity
            if similarity is not None or self.sft or not cfg.screener_min_similarity
            else self._default_similarity()
        )
        self._load_models()
        self.state = {"ref_input_logps": {}, "history": [], "eval_history": [], "n_pass": 0, "n_seen": 0}
        self.step, self.prompt_cache = 0, {}
        self.log_path = self.out / "generations.jsonl"
        self.evaluator, self.eval_rows = None, []
        if cfg.eval_steps and self.main:
            from .data import paradetox_split
            from .evaluate import DetoxEvaluator

            train_rows, validation_rows, _ = paradetox_split(cfg.data_dir)
            self.eval_rows = validation_rows[: cfg.eval_size]
            self.evaluator = evaluator or DetoxEvaluator(train_rows)

    def _load_rows(self) -> None:
        from .data import training_rows

        cfg = self.cfg
        self.rows, self.data_report = training_rows(
            cfg.train_dataset,
            cfg.text_column,
            cfg.data_dir,
            self.tok,
            cfg.max_input_tokens,
            cfg.max_train_samples,
            cfg.seed,
            with_references=self.sft,
            sentence_screener=self.screener if cfg.split_sentences else None,
            screener_threshold=cfg.screener_threshold,
            leak_threshold=cfg.leak_threshold,
            embedder=self._embedder() if cfg.leak_threshold <= 1 else None,
        )
        if not self.rows:
            raise DetoxkitError(
                f"{cfg.train_dataset}: no usable rows (none within --max_input_tokens "
                f"{cfg.max_input_tokens}" + (", or no sentence the screener flags)" if cfg.split_sentences else ")")
            )

    def _embedder(self):
        """The similarity gate's and the leak check's sentence embedder, loaded once."""
        from ..lm.embedder import load_embedder

        if getattr(self, "_loaded_embedder", None) is None:
            name = self.cfg.similarity_model
            self._loaded_embedder = load_embedder(name) if name else load_embedder()
        return self._loaded_embedder

    def _default_similarity(self):
        from ..eval.detox import similarity as cosine

        embedder = self._embedder()
        return lambda xs, ys: cosine(embedder, xs, ys)

    def _load_models(self) -> None:
        import torch

        from ..lm.load import load_model
        from ..training import apply_lora

        cfg = self.cfg
        model = load_model(cfg.model_name_or_path, cfg.dtype)
        self.ref_model = None
        if cfg.use_peft:
            model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules)
        elif not self.sft:
            self.ref_model = load_model(cfg.model_name_or_path, cfg.dtype).to(self.accelerator.device)
            self.ref_model.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        self.model, self.optimizer = self.accelerator.prepare(model, self.optimizer)
        self.unwrapped = self.accelerator.unwrap_model(self.model)

    def resume(self) -> None:
        from ..training import load_trainable_tensors, resume, trim_log

        found = resume(self.out, self.cfg.resume_from_checkpoint, {"optimizer": self.optimizer})
        if found is not None:
            tensors, saved = found
            load_trainable_tensors(self.unwrapped, tensors["model"], saved.pop("path"))
            self.step = saved.pop("step")
            self.state.update(saved)
        if self.main:
            trim_log(self.log_path, lambda r: r["step"] < self.step)

    def ref_logps(self, prompts, completions):
        import torch

        from ..lm.score import completion_logprobs

        with torch.no_grad():
            if self.ref_model is not None:
                return completion_logprobs(self.ref_model, prompts, completions, self.pad)
            with self.unwrapped.disable_adapter():  # LoRA: the base model *is* the reference
                return completion_logprobs(self.unwrapped, prompts, completions, self.pad)

    def evaluate(self, at_step: int) -> None:
        from ..lm.generate import generate_ids
        from .rewrite import decode, prompt_ids

        texts = [r["text"] for r in self.eval_rows]
        ids = generate_ids(
            self.unwrapped.eval(),
            self.tok,
            prompt_ids(self.tok, texts),
            self.cfg.max_new_tokens,
            batch_size=self.cfg.generation_batch_size,
        )
        m = self.evaluator(texts, [decode(self.tok, c) for c in ids], [r["references"] for r in self.eval_rows])
        self.state["eval_history"].append(
            {
                "step": at_step,
                **{k: m[k]["value"] for k in ("STA", "SIM", "FL", "J")},
                "J_ci95": m["J"]["ci95"],
                "n": m["n"],
            }
        )

    def batch(self, step: int) -> tuple[list[int], list[list[int]]]:
        from ..training import batch_indices
        from .rewrite import prompt_ids

        cfg = self.cfg
        idx = batch_indices(step, len(self.rows), cfg.per_device_train_batch_size * self.world, cfg.seed)
        idx = idx[self.rank :: self.world]
        for i in idx:
            if i not in self.prompt_cache:
                self.prompt_cache[i] = prompt_ids(self.tok, [self.rows[i]["text"]])[0]
        return idx, [self.prompt_cache[i] for i in idx]

    def sft_step(self, step: int, idx: list[int], prompts: list[list[int]]) -> tuple[list[dict], object]:
        from ..lm.score import completion_logprobs
        from ..training import lr_at, optimizer_step

        targets = [self.tok(self.rows[i]["reference"], add_special_tokens=False)["input_ids"] + [self.eos] for i in idx]
        losses = optimizer_step(
            self.model,
            self.optimizer,
            self.accelerator,
            lambda: -completion_logprobs(self.model, prompts, targets, self.pad, average=True),
            self.cfg.max_grad_norm,
            lr_at(step, self.cfg),
        )
        return [
            {"step": step, "index": i, "input": self.rows[i]["text"], "target": self.rows[i]["reference"], "loss": loss}
            for i, loss in zip(idx, losses.tolist())
        ], losses

    def propose(self, step: int, idx: list[int], prompts: list[list[int]]) -> dict:
        """The leader's paraphrases and the follower's verdicts: the best of num_generations per input."""
        import torch

        from ..lm.generate import GREEDY, Sampling, generate_ids
        from .rewrite import decode

        cfg, k = self.cfg, self.cfg.num_generations
        if k > 1:  # a pure function of (seed, step, rank), so a resumed run samples what it would have
            torch.manual_seed(random.Random(f"{cfg.seed}:{step}:{self.rank}:sampling").getrandbits(63))
        y_ids = generate_ids(
            self.unwrapped.eval(),
            self.tok,
            [p for p in prompts for _ in range(k)],
            cfg.max_new_tokens,
            Sampling(True, cfg.temperature) if k > 1 else GREEDY,
            batch_size=len(prompts) * k,
        )
        y_text = [decode(self.tok, c) for c in y_ids]
        scores = self.screener(y_text)
        sims = (
            self.similarity([self.rows[i]["text"] for i in idx for _ in range(k)], y_text)
            if cfg.screener_min_similarity > 0
            else None
        )
        raw = follower_verdicts(y_text, scores, sims, cfg.screener_threshold, cfg.screener_min_similarity)
        n_passed = [sum(raw[j * k : (j + 1) * k]) for j in range(len(idx))]
        keep = [
            pick_candidate(raw[j * k : (j + 1) * k], sims[j * k : (j + 1) * k] if sims else None) + j * k
            for j in range(len(idx))
        ]
        return {
            "y_ids": [y_ids[c] for c in keep],
            "y_text": [y_text[c] for c in keep],
            "scores": [scores[c] for c in keep],
            "raw": [raw[c] for c in keep],
            "sims": [sims[c] for c in keep] if sims is not None else None,
            "n_passed": n_passed,
        }

    def screened_step(self, step: int, idx: list[int], prompts: list[list[int]]) -> tuple[list[dict], object]:
        import torch

        from ..lm.score import completion_logprobs
        from ..training import lr_at, optimizer_step

        cfg, device, n = self.cfg, self.accelerator.device, len(idx)
        p = self.propose(step, idx, prompts)
        flips = verdict_flips(step, n * self.world, cfg.feedback_noise, cfg.seed)[self.rank :: self.world]
        passed = torch.tensor([r != f for r, f in zip(p["raw"], flips)], device=device)
        x_ids = [self.tok(self.rows[i]["text"], add_special_tokens=False)["input_ids"] + [self.eos] for i in idx]
        ref_x = self.ref_input_logps(idx, prompts, x_ids)
        y_ids, ref_y = p["y_ids"], self.ref_logps(prompts, p["y_ids"])
        y_len = torch.tensor([max(1, len(y)) for y in y_ids], device=device)

        def loss_fn():
            if cfg.loss_type == "kto":  # KTO never looks at the input as a response
                pol_y, pol_x = completion_logprobs(self.model, prompts, y_ids, self.pad), None
            else:
                both = completion_logprobs(self.model, prompts + prompts, y_ids + x_ids, self.pad)
                pol_y, pol_x = both[:n], both[n:]
            loss = screened_loss(
                cfg.loss_type, pol_y, ref_y, pol_x, ref_x, passed, cfg.beta, cfg.label_smoothing, cfg.fail_weight
            )
            return loss + cfg.rpo_alpha * passed * (-pol_y / y_len) if cfg.rpo_alpha else loss

        losses = optimizer_step(
            self.model, self.optimizer, self.accelerator, loss_fn, cfg.max_grad_norm, lr_at(step, cfg)
        )
        records = [
            {
                "step": step,
                "index": i,
                "input": self.rows[i]["text"],
                "paraphrase": y,
                "screener_score": s,
                "similarity": sim,
                "verdict": "pass" if ok else "fail",
                "flipped": f,
                "loss": loss,
                "candidates_passed": c,
            }
            for i, y, s, sim, ok, f, loss, c in zip(
                idx,
                p["y_text"],
                p["scores"],
                p["sims"] or [None] * n,
                passed.tolist(),
                flips,
                losses.tolist(),
                p["n_passed"],
            )
        ]
        return records, losses

    def ref_input_logps(self, idx, prompts, x_ids):
        """The reference's log p(x | prompt) of each input: computed once per input, cached (and checkpointed)."""
        import torch

        cache = self.state["ref_input_logps"]
        missing = [k for k, i in enumerate(idx) if str(i) not in cache]
        if missing:
            fresh = self.ref_logps([prompts[k] for k in missing], [x_ids[k] for k in missing]).tolist()
            cache.update({str(idx[k]): v for k, v in zip(missing, fresh)})
        return torch.tensor([cache[str(i)] for i in idx], device=self.accelerator.device)

    def gather(self, records: list[dict], idx: list[int]) -> list[dict]:
        if self.world == 1:
            return records
        from accelerate.utils import gather_object

        if not self.sft:
            cache = self.state["ref_input_logps"]
            cache.update(gather_object([(str(i), cache[str(i)]) for i in idx]))
        return gather_object(records)

    def record(self, records: list[dict], losses, window: dict, bar) -> dict:
        """Counters, the progress bar, the JSONL log and (every logging_steps) a history row."""
        from ..runs import append_jsonl
        from ..training import lr_at

        cfg = self.cfg
        n_pass = sum(r.get("verdict") == "pass" for r in records)
        self.state["n_pass"] += n_pass
        self.state["n_seen"] += len(records)
        window = {
            "pass": window["pass"] + n_pass,
            "seen": window["seen"] + len(records),
            "loss": window["loss"] + sum(r["loss"] for r in records),
        }
        if self.main:
            append_jsonl(self.log_path, records)
            bar.update(1)
            bar.set_postfix(
                loss=f"{losses.mean().item():.3f}",  # sft has no screener, so no pass rate
                **({} if self.sft else {"pass_rate": f"{self.state['n_pass'] / self.state['n_seen']:.2f}"}),
            )
        if self.step % cfg.logging_steps == 0 or self.step == cfg.max_steps:
            self.state["history"].append(
                {
                    "step": self.step,
                    "pass_rate": None if self.sft else window["pass"] / window["seen"],
                    "loss": window["loss"] / window["seen"],
                    "lr": lr_at(self.step - 1, cfg),
                }
            )
            window = {"pass": 0, "seen": 0, "loss": 0.0}
        return window

    def checkpoint(self) -> None:
        from ..runs import save_checkpoint
        from ..training import trainable_tensors

        cfg = self.cfg
        if (cfg.save_steps and self.step % cfg.save_steps == 0) or self.step == cfg.max_steps:
            self.accelerator.wait_for_everyone()
            if self.main:
                save_checkpoint(
                    self.out,
                    self.step,
                    {"model": trainable_tensors(self.unwrapped)},
                    self.state,
                    {"optimizer": self.optimizer},
                    keep_last=cfg.save_total_limit,
                )

    def train(self) -> dict:
        from ..runs import progress

        cfg = self.cfg
        self.resume()
        if self.evaluator is not None and self.step == 0 and not self.state["eval_history"]:
            self.evaluate(0)
        window = {"pass": 0, "seen": 0, "loss": 0.0}
        bar = progress(
            total=cfg.max_steps, initial=self.step, desc=f"sro {cfg.loss_type}", unit="step", disable=not self.main
        )
        t_start = time.perf_counter()
        while self.step < cfg.max_steps:
            idx, prompts = self.batch(self.step)
            records, losses = (self.sft_step if self.sft else self.screened_step)(self.step, idx, prompts)
            records = self.gather(records, idx)
            self.step += 1
            window = self.record(records, losses, window, bar)
            if self.evaluator is not None and (self.step % cfg.eval_steps == 0 or self.step == cfg.max_steps):
                self.evaluate(self.step)
            self.checkpoint()
        bar.close()
        return self.finish(time.perf_counter() - t_start)

    def finish(self, seconds: float) -> dict:
        from ..runs import write_json
        from .rewrite import FEW_SHOT, INSTRUCTION, save_rewriter

        cfg, st = self.cfg, self.state
        self.accelerator.wait_for_everyone()
        metrics = {
            "steps": self.step,
            "loss_type": cfg.loss_type,
            "data": self.data_report,
            "seconds_this_session": seconds,
            "pass_rate_overall": st["n_pass"] / st["n_seen"] if st["n_seen"] and not self.sft else None,
            "history": st["history"],
            "eval_history": st["eval_history"],
        }
        if self.main:
            final = self.unwrapped.merge_and_unload() if cfg.use_peft else self.unwrapped
            save_rewriter(
                final,
                self.tok,
                self.out / "final",
                INSTRUCTION,
                cfg.max_new_tokens,
                FEW_SHOT,
                screener_min_similarity=cfg.screener_min_similarity,
                base_model=cfg.model_name_or_path,
                loss_type=cfg.loss_type,
                steps=self.step,
            )
            write_json(self.out / "metrics.json", metrics)
        return metrics


def train(cfg, screener=None, evaluator=None, similarity=None) -> dict:
    """Run the recipe (see :class:`SroTrainer` for the overrides); returns the metrics it also writes."""
    return SroTrainer(cfg, screener, evaluator, similarity).train()


def summary(cfg, m: dict) -> str:
    last = m["history"][-1] if m["history"] else {}
    tail = f"pass rate {m['pass_rate_overall']:.3f} overall" if m["pass_rate_overall"] is not None else "sft"
    j = f", held-out J {m['eval_history'][-1]['J']:.3f}" if m["eval_history"] else ""
    return (
        f"sro train: {m['steps']} steps ({cfg.loss_type}), {tail}, last loss {last.get('loss', float('nan')):.4f}"
        f"{j}; rewriter in {Path(cfg.output_dir) / 'final'}"
    )


TRAIN = Recipe(SroTrainConfig, train, summary)
