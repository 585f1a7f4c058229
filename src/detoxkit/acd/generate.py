"""`detoxkit acd generate`: answer prompts with Adversarial Contrastive Decoding; writes a JSONL of responses."""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

from ..config import Recipe
from .config import GenerateConfig


def _prompts(cfg: GenerateConfig) -> list[str]:
    from ..data import load_records, require_columns
    from ..errors import DetoxkitError

    prompts = list(cfg.prompt)
    if cfg.input:
        rows = load_records(cfg.input)
        require_columns(rows, ["prompt"])
        prompts += [str(r["prompt"]) for r in rows]
    if cfg.limit:
        prompts = prompts[: cfg.limit]
    if not prompts:
        raise DetoxkitError("acd generate: no prompts (give --input or --prompt)")
    return prompts


def _streamed(model, tok, prompts, safe, adv, cfg, opts) -> list[str]:
    from .decode import stream

    responses = []
    for s in range(0, len(prompts), cfg.batch_size):
        batch = prompts[s : s + cfg.batch_size]
        texts = [""] * len(batch)
        print(f"\n>>> {batch[0]}\n", end="", flush=True)
        for deltas in stream(model, tok, batch, safe, adv, **opts):
            print(deltas[0], end="", flush=True)
            texts = [t + d for t, d in zip(texts, deltas)]
        responses += [t.strip() for t in texts]
    print()
    return responses


def run(cfg: GenerateConfig) -> dict:
    from ..lm.load import load_model_and_tokenizer
    from ..runs import append_jsonl, seed_everything
    from .decode import DecodeOptions, generate

    prompts = _prompts(cfg)
    seed_everything(cfg.seed)
    model, tok = load_model_and_tokenizer(cfg.model, cfg.dtype, cfg.device)
    safe = Path(cfg.prompts_dir) / "safe_prompt.safetensors"
    adv = Path(cfg.prompts_dir) / "adv_prompt.safetensors"
    opts = {f.name: getattr(cfg, f.name) for f in fields(DecodeOptions)}  # GenerateConfig has each, by name
    t0 = time.time()
    if cfg.stream:
        responses = _streamed(model, tok, prompts, safe, adv, cfg, opts)
    else:
        responses = generate(model, tok, prompts, safe, adv, batch_size=cfg.batch_size, show_progress=True, **opts)
    out = Path(cfg.output)
    out.unlink(missing_ok=True)
    append_jsonl(out, [{"prompt": p, "response": r, "alpha": cfg.alpha} for p, r in zip(prompts, responses)])
    return {"prompts": len(prompts), "seconds": round(time.time() - t0, 1), "responses": responses}


def summary(cfg: GenerateConfig, r: dict) -> str:
    return f"acd generate: {r['prompts']} prompts, α={cfg.alpha:g}, {r['seconds']:.1f} s -> {cfg.output}"


GENERATE = Recipe(GenerateConfig, run, summary)
