"""`detoxkit attribute nado-train`: a NADO model R for a frozen model, from its own labelled samples (the NADO
decoding baseline)."""

from __future__ import annotations

import random

import torch

from ..config import Recipe
from .config import NadoTrainConfig
from .train import Corpus, draw_samples, train_nado


def run(cfg, scorer=None) -> dict:
    """`detoxkit attribute nado-train`: R for a frozen model from its own labelled samples."""
    from ..lm.batch import pad_id
    from ..lm.generate import stop_ids
    from ..lm.load import load_model, load_tokenizer
    from ..runs import append_jsonl, prepare_output_dir, progress, seed_everything, write_json
    from ..scorers import load_scorer
    from .data import training_texts
    from .nado import NadoModel

    seed_everything(cfg.seed)
    out = prepare_output_dir(cfg)
    tok = load_tokenizer(cfg.model_name_or_path)
    pad = pad_id(tok)
    rows, _ = training_texts(cfg.train_dataset, "lm", cfg.max_train_samples, cfg.seed, cfg.data_dir, cfg.text_column)
    scorer = scorer or load_scorer(cfg.scorer)
    corpus = Corpus(rows, tok, [0.0] * len(rows), max_length=cfg.prompt_tokens + 1, prompt_tokens=cfg.prompt_tokens)
    model = load_model(cfg.model_name_or_path, cfg.dtype, cfg.device)
    stop = stop_ids(model, tok)
    nado = NadoModel.from_base(model, cfg.nado_layers)
    opt = torch.optim.AdamW([p for p in nado.parameters() if p.requires_grad], lr=cfg.nado_learning_rate)
    rng = random.Random(cfg.seed)
    history = []
    for it in progress(range(cfg.iterations), desc="nado-train", unit="round"):
        plan = {0: rng.sample(range(len(corpus)), min(cfg.prompts_per_iteration, len(corpus)))}
        samples = draw_samples(model, tok, scorer, corpus, plan, cfg, it, pad, stop)
        loss = train_nado(nado, opt, samples, cfg, it, pad)
        tox = [t for e in samples[0] for t in e["tox"]]
        history.append({"iteration": it, "nado_loss": loss, "sample_toxicity": sum(tox) / len(tox) if tox else None})
        append_jsonl(
            out / "samples.jsonl",
            [
                {"iteration": it, "prompt": tok.decode(e["prompt"]), "continuation": t, "toxicity": x}
                for e in samples[0]
                for t, x in zip(e["texts"], e["tox"])
            ],
        )
    nado.meta.update(base_model=cfg.model_name_or_path)
    nado.save_pretrained(out / "nado")
    metrics = {"iterations": cfg.iterations, "history": history}
    write_json(out / "metrics.json", metrics)
    return metrics


def summary(cfg, m: dict) -> str:
    last = m["history"][-1]
    return (
        f"attribute nado-train: {cfg.iterations} rounds, last BCE {last['nado_loss']:.4f}, sample toxicity "
        f"{last['sample_toxicity']:.3f}; NADO in {cfg.output_dir}/nado"
    )


NADO_TRAIN = Recipe(NadoTrainConfig, run, summary)
