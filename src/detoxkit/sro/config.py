"""Configs of the SRO recipes: `detoxkit sro train` and `detoxkit sro eval`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from ..config import (
    CheckpointArgs,
    CheckpointLimitArgs,
    DataDirArgs,
    Default,
    FineTuneArgs,
    GenerationArgs,
    LoggingArgs,
    LoraArgs,
    RunArgs,
    arg,
    with_defaults,
)


@dataclass
@with_defaults(
    seed=42,
    output_dir="runs/sro",
    learning_rate=Default(2e-5, "AdamW learning rate (paper: 2e-5)"),
    weight_decay=Default(0.01, "AdamW weight decay (paper: 0.01)"),
    max_steps=200,
    per_device_train_batch_size=Default(8, "toxic inputs per step and device"),
    logging_steps=Default(10, "log running pass rate and loss to metrics every this many steps"),
)
class SroTrainConfig(FineTuneArgs, DataDirArgs, LoggingArgs, CheckpointArgs, CheckpointLimitArgs, LoraArgs):
    """detoxkit sro train: learn a detoxifying rewriter from toxic text alone (SRO, Xie, Li, Zhu 2024).

    Each step the rewriter paraphrases a batch of toxic inputs x (greedy, batched; or the best of num_generations
    samples), the follower judges each paraphrase ŷ (pass = the screener finds it clean AND its MiniLM cosine to x is at least
    screener_min_similarity, i.e. a detoxified paraphrase, not just any clean text), and the loss is DPO preferring ŷ over x where ŷ passed and a push-down of ŷ's
    likelihood (relative to the frozen reference) where it failed. Reference log-probs are computed once
    per input and once per generated paraphrase. Every (input, paraphrase, verdict, loss) goes to
    output_dir/generations.jsonl. Baselines run in the same loop: --loss_type dpo_pass_only (skip the fail
    branch), npo / kto (unpaired alternatives), sft (supervised on a dataset's `references`, e.g.
    builtin:paradetox; the held-out ParaDetox evaluation pool is always excluded). Runs under
    `accelerate launch`.
    """

    model_name_or_path: str = arg(
        "smollm2-135m-instruct", "the rewriter: a builtin name, a local folder or a hub id of a causal LM"
    )
    train_dataset: str = arg("builtin:jigsaw-toxic", "toxic inputs: builtin:NAME, a file or a datasets name")
    text_column: str = arg("text", "the column holding the toxic text")
    max_input_tokens: int = arg(64, "inputs longer than this many tokens are skipped (a cut comment is not a sentence)")
    max_train_samples: int = arg(0, "use at most this many inputs (0 = all), drawn with the seed")
    split_sentences: bool = arg(
        False,
        "train on the sentences (4-40 words) of the inputs that the screener flags, "
        "screened in a seeded order until max_train_samples are found: single toxic "
        "sentences like ParaDetox's, instead of whole multi-sentence comments",
    )
    loss_type: Literal["sro", "dpo_pass_only", "npo", "kto", "sft"] = arg(
        "sro",
        "sro: DPO on pass + push-down on fail; dpo_pass_only: pass branch only; npo: DPO on pass + NPO on fail; "
        "kto: unpaired KTO on the paraphrase; sft: cross-entropy on the dataset's references",
    )
    beta: float = arg(0.1, "β, the KL strength of DPO/SRO/NPO/KTO (paper: 0.1)")
    label_smoothing: float = arg(
        0.1, "ε, the conservative-DPO label smoothing of the sro/dpo_pass_only losses (paper: 0.1)"
    )
    fail_weight: float = arg(
        1.0,
        "weight of the sro loss's fail branch (the push-down of failed rewrites); 0 is "
        "dpo_pass_only. Below 1 when few rewrites pass: the push-down alone then turns a "
        "small rewriter's output into word salad",
    )
    rpo_alpha: float = arg(
        0.0,
        "α: adds α × the mean token NLL of each *passing* paraphrase to its loss (RPO, Pang et "
        "al. 2024; TRL: loss_type [sigmoid, sft], loss_weights [1, α]). DPO alone can lower the "
        "likelihood of both responses; the NLL keeps the passing rewrite itself likely. 0 = off "
        "(the paper)",
    )
    screener: str = arg("toxicity", "the follower: a detoxkit scorer name or `module:callable` returning a scorer")
    screener_threshold: float = arg(0.5, "a paraphrase passes when its screener score is below this")
    screener_min_similarity: float = arg(
        0.5,
        "τ: a paraphrase also needs MiniLM cosine(x, ŷ) >= τ to pass (0 = toxicity only, the paper's follower). "
        "Without it the rewriter can collapse onto one fixed polite text the screener passes; 0.5 passes most "
        "ParaDetox human rewrites while generic apologies and fixed texts fail",
    )
    similarity_model: Optional[str] = arg(
        None, "sentence embedder of the similarity check (default: the builtin MiniLM)"
    )
    feedback_noise: float = arg(
        0.0, "flip each verdict with this probability (seeded): the paper's screener-noise study"
    )
    max_new_tokens: int = arg(32, "paraphrase length limit")
    num_generations: int = arg(
        1,
        "paraphrases proposed per input (TRL's name). 1: one greedy paraphrase (the paper). "
        "k > 1: k paraphrases sampled at `temperature` (seeded by step), all screened; the "
        "loss takes the passing one most similar to the input, or the first if none "
        "passes. An exploration aid not in the paper, for rewriters whose greedy output "
        "rarely passes",
    )
    temperature: float = arg(1.0, "sampling temperature when num_generations > 1")
    warmup_steps: int = arg(0, "linear warm-up steps")
    lr_scheduler_type: Literal["constant", "linear"] = arg(
        "constant", "after warm-up: constant, or linear decay to 0 at max_steps"
    )
    eval_steps: int = arg(
        0,
        "every this many steps (and at step 0), score rewrites of eval_size ParaDetox validation "
        "sentences (STA/SIM/FL/J) for the training curve (0 = off); the test split is never read in training",
    )
    eval_size: int = arg(100, "ParaDetox validation sentences used by the in-training evaluation")
    leak_threshold: float = arg(
        0.9,
        "training inputs at embedder cosine >= this to a held-out ParaDetox input (validation or test) are "
        "dropped, as are exact matches after normalisation; above 1: exact matches only (no embedder loaded)",
    )
    use_peft: bool = arg(False, "train a LoRA adapter (PEFT) instead of all weights; merged into the saved model")
    generation_batch_size: int = arg(16, "batch size of the in-training evaluation's generation")


@dataclass
@with_defaults(output_dir="runs/sro-eval", max_new_tokens=Default(48, "rewrite length limit"))
class SroEvalConfig(RunArgs, DataDirArgs, GenerationArgs):
    """detoxkit sro eval: STA, SIM, FL, J (with 95% intervals) and BLEU/chrF of rewriters on held-out ParaDetox.

    The held-out split is `size` sentences drawn with `split_seed` from the ParaDetox groups that the
    toxicity scorer never trained on (its 10% held-out hash split, seed 42); SFT and the fluency
    calibration never see that pool. Each method is NAME=SOURCE: SOURCE is a trained rewriter folder, any
    causal LM (zero-shot prompting), or `human` (the first human rewrite scored as the output).
    STA = toxicity scorer < 0.5, SIM = MiniLM cosine, FL = fluency proxy: offline stand-ins for the
    official RoBERTa/Wieting/CoLA models. Writes metrics.json, outputs.jsonl and table.md in output_dir.
    """

    methods: list[str] = arg(["human=human", "zero-shot=smollm2-135m-instruct"], "NAME=SOURCE, comma separated")
    split_seed: int = arg(0, "seed of the held-out split")
    split_size: int = arg(670, "sentences in the held-out test split (the official test set has 671)")
    split: Literal["validation", "test"] = arg(
        "test", "which held-out split to score: validation (the rest of the pool) for choices, test once per number"
    )
    max_eval_samples: int = arg(0, "score only the first N held-out sentences (0 = all); reports say it is a subset")
    scorers: Literal["both", "training-signal", "independent"] = arg(
        "both",
        "which judges grade: training-signal (the toxicity head and MiniLM SRO's screener optimises), "
        "independent (the profanity word model and chrF against the input, sharing no weights with them), or both",
    )
    fluency_model: str = arg(
        "smollm2-135m-instruct", "LM of the fluency proxy (calibrated on training-split human rewrites)"
    )
