"""`detoxkit acd {anchors,tune,generate,eval}`: Adversarial Contrastive Decoding end to end."""

from __future__ import annotations

import sys

USAGE = """usage: detoxkit acd {anchors,tune,generate,eval} [--config YAML] [flags] (each has --help)

  anchors   build the anchor set (D_HR, D_HA, D_S) from the target model's own responses
  tune      Opposite Prompt Optimization of the safeguarding and adversarial soft prompts (model frozen)
  generate  answer prompts with contrastive decoding (logits_safe − α·logits_adv)
  eval      ACD vs no system prompt, manual safe prompt, null/opposite Instructive Decoding; α sweep, plot"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    sub, rest = argv[0], argv[1:]
    handlers = {"anchors": _anchors, "tune": _tune, "generate": _generate, "eval": _eval}
    if sub not in handlers:
        print(f"detoxkit acd: unknown subcommand {sub!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return handlers[sub](rest)


def _anchors(argv):
    from ..config import parse_config
    from .anchors import build_anchors
    from .config import AnchorsConfig

    cfg = parse_config(AnchorsConfig, argv, "detoxkit acd anchors")
    meta = build_anchors(cfg)
    c, o = meta["counts"], meta["overlap_check"]
    print(f"acd anchors: {meta['responses']} responses -> D_HR {c['D_HR']}, D_HA {c['D_HA']}, D_S {c['D_S']} "
          f"(dropped {c['dropped']}); eval overlap: {o['candidates_exact_overlap']} exact, "
          f"{o['candidates_near_duplicates_dropped']} near-duplicates dropped -> {cfg.output_dir}/anchors.jsonl")
    return 0


def _tune(argv):
    from ..config import parse_config
    from .config import TuneConfig
    from .tune import tune

    cfg = parse_config(TuneConfig, argv, "detoxkit acd tune")
    m = tune(cfg)
    print(f"acd tune: {m['steps']} steps in {m['seconds']} s; L_SP {m['loss_sp_first']:.2f} -> {m['loss_sp_last']:.2f}, "
          f"L_AP {m['loss_ap_first']:.2f} -> {m['loss_ap_last']:.2f} -> {cfg.output_dir}/safe_prompt.safetensors, "
          "adv_prompt.safetensors" if m["loss_sp_first"] is not None else
          f"acd tune: nothing to do (already at step {m['resumed_from']}) -> {cfg.output_dir}")
    return 0


def _generate(argv):
    import time
    from pathlib import Path

    from ..config import parse_config
    from ..data import load_records, require_columns
    from ..errors import DetoxkitError
    from ..lm.load import load_model_and_tokenizer
    from ..runs import append_jsonl, seed_everything
    from .config import GenerateConfig
    from .decode import generate, stream

    cfg = parse_config(GenerateConfig, argv, "detoxkit acd generate")
    prompts = list(cfg.prompt)
    if cfg.input:
        rows = load_records(cfg.input)
        require_columns(rows, ["prompt"])
        prompts += [str(r["prompt"]) for r in rows]
    if cfg.limit:
        prompts = prompts[: cfg.limit]
    if not prompts:
        raise DetoxkitError("acd generate: no prompts (give --input or --prompt)")
    seed_everything(cfg.seed)
    model, tok = load_model_and_tokenizer(cfg.model)
    safe = Path(cfg.prompts_dir) / "safe_prompt.safetensors"
    adv = Path(cfg.prompts_dir) / "adv_prompt.safetensors"
    opts = dict(alpha=cfg.alpha, form=cfg.form, plausibility=cfg.plausibility, window=cfg.window,
                max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample, temperature=cfg.temperature,
                top_p=cfg.top_p, seed=cfg.seed)
    t0 = time.time()
    if cfg.stream:
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
    else:
        responses = generate(model, tok, prompts, safe, adv, batch_size=cfg.batch_size, show_progress=True, **opts)
    out = Path(cfg.output)
    if out.exists():
        out.unlink()
    append_jsonl(out, [{"prompt": p, "response": r, "alpha": cfg.alpha} for p, r in zip(prompts, responses)])
    print(f"acd generate: {len(prompts)} prompts, α={cfg.alpha:g}, {time.time() - t0:.1f} s -> {out}")
    return 0


def _eval(argv):
    from ..config import parse_config
    from .config import EvalConfig
    from .evaluate import evaluate

    cfg = parse_config(EvalConfig, argv, "detoxkit acd eval")
    m = evaluate(cfg)
    base = m["methods"]["manual_safe"]["harmless_rate"]["value"]
    acd = m["methods"][f"acd_a{cfg.alpha:g}"]["harmless_rate"]["value"]
    print(f"acd eval: harmless rate manual safe {base:.3f} -> ACD(α={cfg.alpha:g}) {acd:.3f} on {m['n_harmful']} "
          f"harmful prompts -> {cfg.output_dir}/report.md, alpha_sweep.png")
    return 0
