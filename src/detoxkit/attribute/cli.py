"""`detoxkit attribute nado-train | train | eval`."""

from __future__ import annotations

from pathlib import Path

SUBCOMMANDS = {
    "nado-train": ("detoxkit.attribute.cli:nado_train_main", "train a NADO model R for a frozen model (NADO decoding)"),
    "train": ("detoxkit.attribute.cli:train_main", "fine-tune with the NADO KL regulariser, or a baseline (--method)"),
    "eval": ("detoxkit.attribute.cli:eval_main", "toxicity, utility, win rate (and classification) of several models"),
}


def main(argv: list[str]) -> int:
    from ..cli import dispatch

    return dispatch("detoxkit attribute", SUBCOMMANDS, argv)


def train_main(argv: list[str]) -> int:
    from ..config import parse_config
    from .config import AttributeTrainConfig
    from .train import train

    cfg = parse_config(AttributeTrainConfig, argv, "detoxkit attribute train")
    m = train(cfg)
    last = m["history"][-1] if m["history"] else {}
    tox = f", self-sample toxic rate {last['sample_toxic_rate']:.3f}" if last.get("sample_toxic_rate") is not None else ""
    print(f"attribute train: {m['steps']} steps ({cfg.method}{', adaptive' if cfg.adaptive else ''}), last task loss "
          f"{last.get('task_loss', float('nan')):.4f}{tox}, {m['seconds_per_step']:.2f} s/step; model in "
          f"{Path(cfg.output_dir) / 'final'}")
    return 0


def nado_train_main(argv: list[str]) -> int:
    from ..config import parse_config
    from .config import NadoTrainConfig
    from .train import train_nado_only

    cfg = parse_config(NadoTrainConfig, argv, "detoxkit attribute nado-train")
    m = train_nado_only(cfg)
    last = m["history"][-1]
    print(f"attribute nado-train: {cfg.iterations} rounds, last BCE {last['nado_loss']:.4f}, sample toxicity "
          f"{last['sample_toxicity']:.3f}; NADO in {Path(cfg.output_dir) / 'nado'}")
    return 0


def eval_main(argv: list[str]) -> int:
    from ..config import parse_config
    from .config import AttributeEvalConfig
    from .evaluate import evaluate

    cfg = parse_config(AttributeEvalConfig, argv, "detoxkit attribute eval")
    m = evaluate(cfg)
    parts = [f"{name}: EMT {r['toxicity']['expected_max_toxicity']['value']:.3f}, MC {r['mc_mean']:.3f}"
             for name, r in m["results"].items()]
    print(f"attribute eval: {'; '.join(parts)}; table in {Path(cfg.output_dir) / 'table.md'}")
    return 0
