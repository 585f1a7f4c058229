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

from ..errors import DetoxkitError


def follower_verdicts(paraphrases: list[str], toxicity: list[float], similarity: list[float] | None,
                      threshold: float, min_similarity: float) -> list[bool]:
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


def screened_loss(loss_type: str, pol_y, ref_y, pol_x, ref_x, passed, beta: float, label_smoothing: float,
                  fail_weight: float = 1.0):
    """Per-example loss of one online batch for each loss_type (see SroTrainConfig)."""
    import torch

    from ..core.preference import dpo_loss, kto_loss, npo_loss, sro_loss

    if loss_type == "kto":
        return kto_loss(pol_y, ref_y, passed, beta)
    if loss_type == "npo":
        return torch.where(passed, dpo_loss(pol_y, pol_x, ref_y, ref_x, beta, label_smoothing), npo_loss(pol_y, ref_y, beta))
    return sro_loss(pol_y, ref_y, pol_x, ref_x, passed, beta, label_smoothing,
                    fail_weight=0.0 if loss_type == "dpo_pass_only" else fail_weight)


def train(cfg, screener=None, evaluator=None, similarity=None) -> dict:
    """Run the recipe; `screener` (texts -> scores) overrides cfg.screener, `similarity` ((inputs, outputs) ->
    cosines) the follower's embedder, and `evaluator` (a DetoxEvaluator) the one built for the in-training
    evaluation (Python API, tests, benchmarks)."""
    import torch
    from accelerate import Accelerator

    from ..lm.load import load_model, load_tokenizer
    from ..runs import append_jsonl, load_checkpoint, prepare_output_dir, progress, read_jsonl, resolve_resume, save_checkpoint, seed_everything, write_json
    from ..scorers import load_scorer
    from ..training import apply_lora, batch_indices, load_trainable_tensors, lr_at, optimizer_step as policy_step, trainable_tensors
    from .data import paradetox_split, training_rows
    from ..lm.generate import GREEDY, Sampling, generate_ids
    from ..lm.score import completion_logprobs as completion_logps
    from .rewrite import decode, prompt_ids, save_rewriter, FEW_SHOT, INSTRUCTION

    if not 0.0 <= cfg.feedback_noise <= 1.0:
        raise DetoxkitError(f"--feedback_noise must be in [0, 1], got {cfg.feedback_noise}")
    if cfg.fail_weight < 0 or cfg.rpo_alpha < 0:
        raise DetoxkitError(f"--fail_weight and --rpo_alpha must be >= 0, got {cfg.fail_weight} and {cfg.rpo_alpha}")
    if not 0.0 <= cfg.screener_min_similarity <= 1.0:
        raise DetoxkitError(f"--screener_min_similarity must be in [0, 1], got {cfg.screener_min_similarity}")
    if cfg.max_steps < 1 or cfg.per_device_train_batch_size < 1 or cfg.num_generations < 1:
        raise DetoxkitError("--max_steps, --per_device_train_batch_size and --num_generations must be at least 1")
    if cfg.num_generations > 1 and not cfg.temperature > 0:
        raise DetoxkitError(f"--temperature must be > 0 to sample num_generations={cfg.num_generations}, got {cfg.temperature}")
    accelerator = Accelerator()
    main = accelerator.is_main_process
    seed_everything(cfg.seed)
    out = prepare_output_dir(cfg) if main else Path(cfg.output_dir)
    tok = load_tokenizer(cfg.model_name_or_path)
    sft = cfg.loss_type == "sft"
    if sft and cfg.split_sentences:
        raise DetoxkitError("--split_sentences needs a screener; the sft baseline trains on whole references")
    if not sft and screener is None:
        screener = load_scorer(cfg.screener, "screener")
    rows, data_report = training_rows(cfg.train_dataset, cfg.text_column, cfg.data_dir, tok, cfg.max_input_tokens,
                                      cfg.max_train_samples, cfg.seed, with_references=sft,
                                      sentence_screener=screener if cfg.split_sentences else None,
                                      screener_threshold=cfg.screener_threshold)
    if not rows:
        raise DetoxkitError(f"{cfg.train_dataset}: no usable rows (none within --max_input_tokens {cfg.max_input_tokens}"
                            + (", or no sentence the screener flags)" if cfg.split_sentences else ")"))
    if not sft and cfg.screener_min_similarity > 0 and similarity is None:
        from ..eval.detox import similarity as cosine
        from ..lm.embedder import load_embedder

        embedder = load_embedder(cfg.similarity_model) if cfg.similarity_model else load_embedder()
        similarity = lambda xs, ys: cosine(embedder, xs, ys)  # noqa: E731
    model = load_model(cfg.model_name_or_path)
    ref_model = None
    if cfg.use_peft:
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules)
    elif not sft:
        ref_model = load_model(cfg.model_name_or_path).to(accelerator.device).requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def ref_logps(prompts, completions):
        with torch.no_grad():
            if ref_model is not None:
                return completion_logps(ref_model, prompts, completions, pad)
            with unwrapped.disable_adapter():  # LoRA: the base model *is* the reference
                return completion_logps(unwrapped, prompts, completions, pad)

    state = {"ref_input_logps": {}, "history": [], "eval_history": [], "n_pass": 0, "n_seen": 0}
    step = 0
    resume = resolve_resume(out, cfg.resume_from_checkpoint)
    if resume is not None:
        tensors, saved = load_checkpoint(resume, {"optimizer": optimizer})
        load_trainable_tensors(unwrapped, tensors["model"], resume)
        step = saved.pop("step")
        state.update(saved)
    log_path = out / "generations.jsonl"
    if main:
        # Rows written after the checkpoint we resume from would be written again: drop them.
        kept = [r for r in read_jsonl(log_path) if r["step"] < step]
        log_path.unlink(missing_ok=True)
        append_jsonl(log_path, kept)

    eval_rows = []
    if cfg.eval_steps and main:
        from .evaluate import DetoxEvaluator

        train_rows, test_rows = paradetox_split(cfg.data_dir)
        eval_rows = test_rows[: cfg.eval_size]
        evaluator = evaluator or DetoxEvaluator(train_rows)
    else:
        evaluator = None

    def run_eval(at_step: int):
        texts = [r["text"] for r in eval_rows]
        ids = generate_ids(unwrapped.eval(), tok, prompt_ids(tok, texts), cfg.max_new_tokens,
                           batch_size=cfg.generation_batch_size)
        m = evaluator(texts, [decode(tok, c) for c in ids], [r["references"] for r in eval_rows])
        state["eval_history"].append({"step": at_step, **{k: m[k]["value"] for k in ("STA", "SIM", "FL", "J")},
                                      "J_ci95": m["J"]["ci95"], "n": m["n"]})

    if evaluator is not None and step == 0 and not state["eval_history"]:
        run_eval(0)

    rank, world = accelerator.process_index, accelerator.num_processes
    prompt_cache: dict[int, list[int]] = {}
    eos = tok.eos_token_id
    window = {"pass": 0, "seen": 0, "loss": 0.0}
    bar = progress(total=cfg.max_steps, initial=step, desc=f"sro {cfg.loss_type}", unit="step", disable=not main)
    t_start = time.perf_counter()
    while step < cfg.max_steps:
        idx = batch_indices(step, len(rows), cfg.per_device_train_batch_size * world, cfg.seed)[rank::world]
        for i in idx:
            if i not in prompt_cache:
                prompt_cache[i] = prompt_ids(tok, [rows[i]["text"]])[0]
        prompts = [prompt_cache[i] for i in idx]
        if sft:
            targets = [tok(rows[i]["reference"], add_special_tokens=False)["input_ids"] + [eos] for i in idx]
            losses = policy_step(model, optimizer, accelerator,
                                 lambda: -completion_logps(model, prompts, targets, pad, average=True),
                                 cfg.max_grad_norm, lr_at(step, cfg))
            records = [{"step": step, "index": i, "input": rows[i]["text"], "target": rows[i]["reference"], "loss": l}
                       for i, l in zip(idx, losses.tolist())]
        else:
            k = cfg.num_generations
            if k > 1:  # a pure function of (seed, step, rank), so a resumed run samples what it would have
                torch.manual_seed(random.Random(f"{cfg.seed}:{step}:{rank}:sampling").getrandbits(63))
            y_ids = generate_ids(unwrapped.eval(), tok, [p for p in prompts for _ in range(k)], cfg.max_new_tokens,
                                 Sampling(True, cfg.temperature) if k > 1 else GREEDY, batch_size=len(prompts) * k)
            y_text = [decode(tok, c) for c in y_ids]
            scores = screener(y_text)
            sims = (similarity([rows[i]["text"] for i in idx for _ in range(k)], y_text)
                    if cfg.screener_min_similarity > 0 else None)
            raw = follower_verdicts(y_text, scores, sims, cfg.screener_threshold, cfg.screener_min_similarity)
            if k > 1:
                n_passed = [sum(raw[j * k : (j + 1) * k]) for j in range(len(idx))]
                keep = [pick_candidate(raw[j * k : (j + 1) * k], sims[j * k : (j + 1) * k] if sims else None) + j * k
                        for j in range(len(idx))]
                y_ids, y_text, scores, raw = ([v[c] for c in keep] for v in (y_ids, y_text, scores, raw))
                sims = [sims[c] for c in keep] if sims is not None else None
            else:
                n_passed = [int(r) for r in raw]
            flips = verdict_flips(step, len(idx) * world, cfg.feedback_noise, cfg.seed)[rank::world]
            passed = torch.tensor([r != f for r, f in zip(raw, flips)], device=accelerator.device)
            x_ids = [tok(rows[i]["text"], add_special_tokens=False)["input_ids"] + [eos] for i in idx]
            missing = [k for k, i in enumerate(idx) if str(i) not in state["ref_input_logps"]]
            if missing:
                fresh = ref_logps([prompts[k] for k in missing], [x_ids[k] for k in missing]).tolist()
                state["ref_input_logps"].update({str(idx[k]): v for k, v in zip(missing, fresh)})
            ref_x = torch.tensor([state["ref_input_logps"][str(i)] for i in idx], device=accelerator.device)
            ref_y = ref_logps(prompts, y_ids)
            n = len(idx)
            y_len = torch.tensor([max(1, len(y)) for y in y_ids], device=accelerator.device)

            def loss_fn():
                if cfg.loss_type == "kto":  # KTO never looks at the input as a response
                    pol_y, pol_x = completion_logps(model, prompts, y_ids, pad), None
                else:
                    both = completion_logps(model, prompts + prompts, y_ids + x_ids, pad)
                    pol_y, pol_x = both[:n], both[n:]
                loss = screened_loss(cfg.loss_type, pol_y, ref_y, pol_x, ref_x, passed, cfg.beta, cfg.label_smoothing,
                                     cfg.fail_weight)
                if cfg.rpo_alpha:
                    loss = loss + cfg.rpo_alpha * passed * (-pol_y / y_len)
                return loss

            losses = policy_step(model, optimizer, accelerator, loss_fn, cfg.max_grad_norm, lr_at(step, cfg))
            records = [{"step": step, "index": i, "input": rows[i]["text"], "paraphrase": y, "screener_score": s,
                        "similarity": sim, "verdict": "pass" if p else "fail", "flipped": f, "loss": l,
                        "candidates_passed": c}
                       for i, y, s, sim, p, f, l, c in zip(idx, y_text, scores, sims or [None] * len(idx),
                                                           passed.tolist(), flips, losses.tolist(), n_passed)]
        if world > 1:
            from accelerate.utils import gather_object

            records = gather_object(records)
            if not sft:
                state["ref_input_logps"].update(gather_object(
                    [(str(i), state["ref_input_logps"][str(i)]) for i in idx]))
        step += 1
        n_pass = sum(r.get("verdict") == "pass" for r in records)
        state["n_pass"] += n_pass
        state["n_seen"] += len(records)
        window["pass"] += n_pass
        window["seen"] += len(records)
        window["loss"] += sum(r["loss"] for r in records)
        if main:
            append_jsonl(log_path, records)
            bar.update(1)
            bar.set_postfix(loss=f"{losses.mean().item():.3f}",  # sft has no screener, so no pass rate
                            **({} if sft else {"pass_rate": f"{state['n_pass'] / state['n_seen']:.2f}"}))
        if step % cfg.logging_steps == 0 or step == cfg.max_steps:
            state["history"].append({"step": step, "pass_rate": window["pass"] / window["seen"] if not sft else None,
                                     "loss": window["loss"] / window["seen"], "lr": lr_at(step - 1, cfg)})
            window = {"pass": 0, "seen": 0, "loss": 0.0}
        if evaluator is not None and (step % cfg.eval_steps == 0 or step == cfg.max_steps):
            run_eval(step)
        if (cfg.save_steps and step % cfg.save_steps == 0) or step == cfg.max_steps:
            accelerator.wait_for_everyone()
            if main:
                save_checkpoint(out, step, {"model": trainable_tensors(unwrapped)}, state, {"optimizer": optimizer},
                                keep_last=cfg.save_total_limit)
    bar.close()
    seconds = time.perf_counter() - t_start
    accelerator.wait_for_everyone()
    metrics = {"steps": step, "loss_type": cfg.loss_type, "data": data_report, "seconds_this_session": seconds,
               "pass_rate_overall": state["n_pass"] / state["n_seen"] if state["n_seen"] and not sft else None,
               "history": state["history"], "eval_history": state["eval_history"]}
    if main:
        final = unwrapped.merge_and_unload() if cfg.use_peft else unwrapped
        save_rewriter(final, tok, out / "final", INSTRUCTION, cfg.max_new_tokens, FEW_SHOT,
                      screener_min_similarity=cfg.screener_min_similarity, base_model=cfg.model_name_or_path,
                      loss_type=cfg.loss_type, steps=step)
        write_json(out / "metrics.json", metrics)
    return metrics


def main(argv: list[str]) -> int:
    from ..config import parse_config
    from .config import SroTrainConfig

    cfg = parse_config(SroTrainConfig, argv, "detoxkit sro train")
    m = train(cfg)
    last = m["history"][-1] if m["history"] else {}
    tail = f"pass rate {m['pass_rate_overall']:.3f} overall" if m["pass_rate_overall"] is not None else "sft"
    j = f", held-out J {m['eval_history'][-1]['J']:.3f}" if m["eval_history"] else ""
    print(f"sro train: {m['steps']} steps ({cfg.loss_type}), {tail}, last loss {last.get('loss', float('nan')):.4f}{j}; "
          f"rewriter in {Path(cfg.output_dir) / 'final'}")
    return 0
