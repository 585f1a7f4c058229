"""Configs of the attribute-control recipes: `detoxkit attribute nado-train | train | eval`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import (
    CheckpointLimitArgs,
    DataDirArgs,
    Default,
    FineTuneArgs,
    GenerationArgs,
    RunArgs,
    arg,
    with_defaults,
)


@dataclass
class SamplingArgs:
    """Fields shared by every recipe that samples continuations and labels them (the NADO's data)."""

    scorer: str = arg("toxicity", "the oracle C: a detoxkit scorer name; a continuation satisfies C when it scores low")
    prompt_tokens: int = arg(16, "self-generation prompts are the first this many tokens of a training text")
    max_new_tokens: int = arg(20, "length of each sampled continuation (the reference code: 20)")
    samples_per_prompt: int = arg(2, "continuations sampled per prompt for NADO training (the first also feeds the KL)")
    top_p: float = arg(1.0, "nucleus sampling of the continuations (1 = plain sampling, as in the reference code)")
    nado_layers: int = arg(2, "transformer layers of the NADO trunk, copied from the base's lowest layers")
    nado_learning_rate: float = arg(1e-3, "AdamW learning rate of the NADO model")
    nado_epochs: int = arg(2, "passes over each iteration's samples when training the NADO model")
    nado_batch_size: int = arg(16, "sequences per NADO update")
    guidance_strength: float = arg(1.0, "exponent of R in q* ∝ p·R^s (1 = the closest distribution satisfying C)")


@dataclass
@with_defaults(
    seed=42,
    output_dir="runs/attribute",
    learning_rate=Default(2e-5, "AdamW learning rate of the model (the reference code: 3e-5)"),
    per_device_train_batch_size=Default(8, "training texts per step and device"),
    max_steps=Default(100, "optimizer steps of the model"),
)
class AttributeTrainConfig(SamplingArgs, FineTuneArgs, DataDirArgs, CheckpointLimitArgs):
    """detoxkit attribute train: fine-tune on a corpus (toxic parts included) while keeping generations non-toxic.

    Methods, all in one harness on the same batches (Meng et al., EMNLP 2024 Findings):
      sft          plain fine-tuning: the language-model loss on the corpus.
      filtration   the same on the texts the scorer does not flag (score < filter_threshold).
      rl           task loss + rl_coef · mean log p(y) of the self-generated continuations the scorer flags
                   (REINFORCE-style push-down of toxic samples, the reference code's RL baseline).
      regularized  task loss + λ · KL(q* ‖ p_θ) per token of self-generated continuations, where
                   q* ∝ p · R and R is a NADO model trained on labelled samples of the model itself; p is
                   the model that drew those samples (frozen), so q* is the I-projection R estimates.
    --adaptive does two things, which --no-adaptive_weighting separates for an ablation: it spends the regulariser
    on the most toxic texts of each batch (which rows: those scoring at least adaptive_min_weight, most toxic
    first) and weights each by the scorer's toxicity of the text it continues (how much). Without --adaptive the
    first reg_batch_size rows of each batch are regularised, each weighing 1.
    Schedules (rl, regularized), one iteration = steps_per_iteration optimizer steps:
      sequential  sample from the current model -> label -> train the NADO -> fine-tune, one after another.
      parallel    while the model fine-tunes on the samples and NADO of the previous iteration, a background
                  thread samples from a snapshot of the model and trains the NADO on them (iteration 1 is
                  bootstrapped sequentially), so sampling and NADO training cost no extra wall time when
                  there is hardware to spare.
    Default corpus (--train_dataset blend): equal parts toxic Jigsaw comments and clean WikiText/XSum text.
    --task classification formats labelled rows as "Comment: ...\\nIs this comment toxic? Yes|No" (the
    toxicity-detection study). Writes checkpoints, samples.jsonl (every labelled sample), metrics.json and
    final/ (model; final/nado for regularized). Runs under `accelerate launch` (parallel: one process).
    """

    model_name_or_path: str = arg(
        "smollm2-135m-instruct", "the model to fine-tune: builtin name, local folder or hub id"
    )
    method: Literal["sft", "filtration", "rl", "regularized"] = arg("regularized", "see above")
    adaptive: bool = arg(False, "regularise the most toxic texts of each batch, weighted by their toxicity")
    adaptive_weighting: bool = arg(
        True,
        "with --adaptive: weight each regularised row by its toxicity (off: the "
        "same rows, each weighing 1, so only the choice of rows changes)",
    )
    adaptive_min_weight: float = arg(
        0.1, "with --adaptive, texts scoring below this get no regulariser (and no sampling)"
    )
    schedule: Literal["parallel", "sequential"] = arg(
        "parallel", "how sampling, NADO training and fine-tuning are scheduled"
    )
    reg_lambda: float = arg(1.0, "λ, the weight of the KL regulariser")
    rl_coef: float = arg(0.1, "weight of the RL baseline's push-down term")
    filter_threshold: float = arg(
        0.5, "filtration drops texts scoring at or above this; also the toxic/clean cut of labels"
    )
    train_dataset: str = arg(
        "blend", "blend (equal parts toxic comments and clean text), builtin:NAME, a file or a datasets name"
    )
    text_column: str = arg("text", "column of the training text")
    label_column: str = arg("label", "column of the 0/1 toxicity label (only for --task classification)")
    task: Literal["lm", "classification"] = arg(
        "lm", "lm: learn the text; classification: learn 'is it toxic? Yes/No' as text"
    )
    max_train_samples: int = arg(2000, "use at most this many training texts (0 = all), drawn with the seed")
    max_length: int = arg(64, "training texts are cut to this many tokens")
    reg_batch_size: int = arg(4, "self-generation prompts per step (taken from the step's training texts)")
    steps_per_iteration: int = arg(
        10, "model steps per sample -> NADO -> fine-tune iteration; checkpoints at iteration ends"
    )


@dataclass
@with_defaults(seed=42, output_dir="runs/nado")
class NadoTrainConfig(SamplingArgs, RunArgs, DataDirArgs):
    """detoxkit attribute nado-train: train a NADO model R for a frozen model (the NADO-decoding baseline).

    Each iteration samples `samples_per_prompt` continuations of `prompts_per_iteration` prompts (prefixes of
    the training texts) from the model, labels them with the scorer, and trains R by binary cross-entropy of
    its logit for each sampled token against the sequence's label. Decode with it through
    `detoxkit attribute eval --methods NAME=MODEL+nado=FOLDER`. Writes output_dir/nado and metrics.json.
    """

    model_name_or_path: str = arg("smollm2-135m-instruct", "the frozen model R is trained for")
    train_dataset: str = arg("blend", "where the prompts come from (see attribute train)")
    text_column: str = arg("text", "column of the training text")
    max_train_samples: int = arg(2000, "texts drawn with the seed")
    iterations: int = arg(4, "sample -> label -> train rounds")
    prompts_per_iteration: int = arg(64, "prompts sampled per round")


@dataclass
@with_defaults(
    output_dir="runs/attribute-eval",
    max_new_tokens=Default(20, "continuation length"),
    batch_size=Default(16, "generation and scoring batch size"),
)
class AttributeEvalConfig(RunArgs, DataDirArgs, GenerationArgs):
    """detoxkit attribute eval: the paper's table for several models, with 95% intervals.

    Each method is NAME=MODEL or NAME=MODEL+nado=FOLDER (NADO decoding: MODEL guided by R at inference).
    Toxicity: `k` sampled continuations of `num_prompts` RealToxicityPrompts challenging prompts, scored by
    the toxicity scorer (expected max toxicity, toxicity probability). Utility: perplexity on held-out
    WikiText sentences and multiple-choice accuracy by log-likelihood on MMLU, CommonsenseQA and PIQA.
    Quality: win rate of each model's continuations against the first method's (`baseline`), judged by an
    LM asked which of two continuations is better written, both orders averaged. With --classification,
    also ROC-AUC of P(Yes) on held-out ToxiGen comments. Writes metrics.json, table.md, generations.jsonl.
    --scorers both (the default) also scores the same continuations with the profanity word model, which shares no
    weights with the toxicity head the regulariser and NADO were trained against.
    """

    methods: list[str] = arg(
        ["base=smollm2-135m-instruct"], "NAME=MODEL[+nado=FOLDER], comma separated; the first is the win-rate baseline"
    )
    num_prompts: int = arg(100, "RealToxicityPrompts prompts")
    k: int = arg(5, "continuations per prompt")
    top_p: float = arg(0.9, "nucleus sampling of the evaluation continuations")
    scorers: Literal["both", "training-signal"] = arg(
        "both", "training-signal: the toxicity head only; both: also the independent profanity word model"
    )
    num_ppl_texts: int = arg(200, "held-out WikiText sentences for perplexity")
    num_mc_items: int = arg(100, "items per multiple-choice task (MMLU, CommonsenseQA, PIQA)")
    win_rate_judge: str = arg("smollm2-135m-instruct", "LM judge of the win rate ('off' to skip)")
    num_win_prompts: int = arg(50, "prompts whose first continuation is judged for the win rate")
    classification: bool = arg(False, "also the toxicity-detection ROC-AUC on held-out ToxiGen")
    num_classification_items: int = arg(200, "held-out ToxiGen comments for the ROC-AUC")
