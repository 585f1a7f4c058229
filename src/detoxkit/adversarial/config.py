"""Configs of `detoxkit adversarial run` and `detoxkit adversarial eval`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from ..config import (
    Default,
    GenerationArgs,
    LoraArgs,
    OutputArgs,
    ResumeArgs,
    RunArgs,
    SamplingOptions,
    TrainArgs,
    arg,
    with_defaults,
)
from .sources import SOURCES


@dataclass
@with_defaults(
    output_dir=Default("runs/adversarial", "run folder: prompts.jsonl, checkpoint-<round>/, eval.jsonl, config.yaml"),
    max_new_tokens=Default(48, "attacker generation length"),
    temperature=Default(0.9, "attacker sampling temperature (paper: 0.6 with davinci; a 135M model needs more)"),
    top_p=Default(0.95, "attacker nucleus sampling"),
    batch_size=Default(16, "judge scoring and attacker generation batch size (a round's prompts: one batch each)"),
    learning_rate=Default(2e-4, "AdamW learning rate of both fine-tunes (LoRA scale; use ~1e-5 for full)"),
    per_device_train_batch_size=Default(8, "fine-tuning batch size"),
)
class AdversarialRunConfig(RunArgs, ResumeArgs, LoraArgs, GenerationArgs, SamplingOptions, TrainArgs):
    """detoxkit adversarial run: the attacker–judge loop of O'Neill et al. (2023), on open models.

    Each round the attacker (a chat LM with the paper's system messages) writes prompts_per_round prompts,
    alternating problematic and benign requests; exact and near duplicates (MiniLM cosine >= dedup_threshold)
    of any earlier prompt are rejected and rewritten. The oracle labels each prompt, the judge classifies it
    (P('1') vs P('0') after the paper's judge prompt), and the row goes to output_dir/prompts.jsonl at once.
    At the end of the round the judge is fine-tuned on all labelled data so far (seed data + every round),
    the attacker on every prompt that fooled the judge (oracle 1, judge 0), and both are checkpointed as
    safetensors (trainable weights only). prompts.jsonl is the source of truth: a killed run resumes at the
    round and prompt where it stopped (--resume_from_checkpoint latest). With eval_each_round, the judge of
    every round (round 0 = the base model zero-shot, the reference) is scored on the hold-out set.

    Data and yardstick (issue 16): seeds come from several builtin sources (--sources), balanced per source, with
    --seeds_per_round more each round; --holdout_sources are held out whole and scored every round (never trained
    on); each slot asks the attacker for a phrasing (--vary_phrasing) and each round's phrasing spread is logged;
    the evaluation sets (holdout.jsonl) hold the reference-misses hold-out, an ordinary hold-out chosen by no model,
    a validation split (every round's thresholds) and transfer sets; --judge_template text asks the judge about
    any text; --control_judge trains a same-steps judge without the attacker (eval_control.jsonl).
    """

    attacker_model: str = arg(
        "smollm2-135m-instruct", "the attacker: a builtin name, folder or hub id of a chat causal LM"
    )
    judge_model: str = arg("smollm2-135m-instruct", "the judge: a causal LM answering '1' (problematic) or '0'")
    oracle: Literal["classifier", "scorer", "lm-judge", "human", "labels"] = arg(
        "classifier",
        "ground truth: classifier = MiniLM logistic regression trained on builtin harmful vs benign "
        "prompts (disjoint from the hold-out); scorer = a detoxkit scorer on the prompt (oracle_scorer); "
        "lm-judge = oracle_model asked zero-shot; human = ask at the terminal; labels = oracle_labels "
        "file (prompt,label) with the classifier as fallback for generated prompts",
    )
    oracle_scorer: str = arg("toxicity", "the scorer of --oracle scorer (applied to the prompt text)")
    oracle_model: str = arg("smollm2-135m-instruct", "the LM of --oracle lm-judge")
    oracle_labels: Optional[str] = arg(None, "a file with prompt,label columns (--oracle labels)")
    oracle_threshold: float = arg(0.5, "an oracle score >= this is label 1 (problematic)")
    oracle_agreement: bool = arg(
        False,
        "train the judge and the attacker only on generated prompts the oracle labels as the kind the attacker was "
        "asked to write (a benign request the oracle calls problematic, or the reverse, is logged and counted per "
        "round as oracle_disagrees, not trained on); the control judge then gets as many random prompts as were kept",
    )
    human_labels_file: Optional[str] = arg(None, "JSONL of human answers (default: output_dir/human_labels.jsonl)")
    rounds: int = arg(3, "rounds of prompting + fine-tuning")
    prompts_per_round: int = arg(16, "prompts written per round (half problematic, half benign, alternating)")
    seed_problematic: int = arg(8, "builtin harmful prompts (advbench/harmbench) seeding the judge and attacker data")
    seed_benign: int = arg(8, "builtin benign-edgy prompts seeding the judge data (label 0)")
    dedup_threshold: float = arg(0.9, "a prompt whose MiniLM cosine to an earlier one is >= this is a near duplicate")
    max_tries: int = arg(3, "attempts per prompt slot before it is logged as a duplicate and skipped")
    embedder: str = arg("all-minilm-l6-v2", "sentence embedder for near-duplicate detection")
    judge_train_mode: Literal["lora", "full", "last_layers"] = arg(
        "lora",
        "judge fine-tuning: LoRA adapter, all weights, or the last num_train_layers blocks. lora: judge and "
        "attacker (same model, attacker lora or none) are adapters on ONE copy of the base model, the reference is "
        "the judge with its adapter disabled; full/last_layers change the base weights, so each role then loads "
        "its own copy (about twice the memory)",
    )
    attacker_train_mode: Literal["lora", "full", "last_layers", "none"] = arg(
        "lora",
        "attacker fine-tuning (none = frozen); lora or none share the judge's base model, full/last_layers load "
        "their own copy",
    )
    num_train_layers: int = arg(2, "blocks trained by last_layers (plus the final norm)")
    micro_batch_size: int = arg(
        4,
        "rows per forward/backward within a fine-tuning batch (gradients summed: the same step, fewer activations "
        "in memory at once; 0 = the whole per_device_train_batch_size)",
    )
    micro_batch_tokens: int = arg(
        448,
        "padded tokens per forward/backward at most (rows x the longest row; a longer row runs alone): long prompts "
        "such as the role-play framings run fewer to a micro-batch, so activations stay bounded (0 = no limit)",
    )
    mmap_threshold_mb: int = arg(
        1,
        "allocations of this many MiB or more get their own memory map, unmapped when freed (glibc's mallopt, for the "
        "rest of the process): a fine-tune's activation blocks then leave no heap behind, which lowers the run's peak "
        "RSS; 0 = glibc's own threshold, which rises as large blocks are freed",
    )
    judge_epochs: int = arg(3, "judge epochs over all labelled data per round (paper: 5)")
    attacker_epochs: int = arg(2, "attacker epochs over the successful attacks per round")
    eval_each_round: bool = arg(True, "score the judge of every round (and the reference) on the hold-out set")
    calibrate_reference: bool = arg(
        True,
        "judge the zero-shot reference (and the round-1 verdicts) at the threshold that "
        "best separates the seed data: the 135M model answers '1' to nearly every "
        "prompt, so at 0.5 it misses none; fine-tuned judges answer at 0.5",
    )
    holdout_problematic: int = arg(
        40,
        "reference-misses hold-out: builtin hold-out harmful prompts the reference judge misses (so round 0 "
        "scores 0 recall on them by construction; the ordinary hold-out is the unselected one)",
    )
    holdout_benign: int = arg(
        40, "hold-out contentious-but-acceptable prompts (builtin benign-edgy, never in seed data)"
    )
    transfer_dataset: str = arg(
        "builtin:toxigen-200", "transfer task: a (text, label) toxic-comment set, scored by ROC-AUC"
    )
    transfer_size: int = arg(100, "transfer texts (class-balanced sample; 0 = all)")
    leak_threshold: float = arg(
        0.9,
        "hold-out prompts at embedder cosine >= this to a training-side prompt (or equal after normalisation) "
        "are removed from the hold-out; counts in output_dir/splits.json (above 1: exact matches only)",
    )
    sources: list[str] = arg(
        list(SOURCES),
        "builtin prompt sources (seeds, oracle training, control prompts, evaluation), comma-separated; each is "
        "split by the hash of the request (a framing's inner one): 60% training side, 10% validation, 30% ordinary "
        "hold-out; plain-howto and plain-questions (PIQA's and CommonsenseQA's questions in plain wording, benign) are "
        "known but not in the default mix",
    )
    holdout_sources: list[str] = arg(
        ["donotanswer"],
        "sources held out whole (leave-one-source-out): never in seeds, oracle training, attacker examples or "
        "control prompts; the per-round table on them is marked never-trained-on (empty: none). A source not in "
        "--sources is loaded for it: donotanswer,plain-howto scores unseen harmful questions against unseen benign "
        "ones, where Do-Not-Answer alone borrows its benign rows from the ordinary hold-out (sources seen in training)",
    )
    seeds_per_round: int = arg(
        8, "extra seed prompts added to the judge's data each round (half problematic), balanced per source"
    )
    oracle_per_source: int = arg(150, "classifier oracle: at most this many training prompts per source and label")
    vary_phrasing: bool = arg(
        True,
        "name a phrasing (question, instruction, story, hypothetical, indirect; round-robin) in each slot's "
        "request to the attacker; every round's phrasing spread is in prompts.jsonl and metrics.json",
    )
    holdout_ordinary: int = arg(
        40,
        "ordinary hold-out prompts per class: random hold-out prompts, not chosen by the reference's misses (0 = all)",
    )
    validation_size: int = arg(
        40, "validation prompts per class: every round's thresholds are chosen on them (0 = all)"
    )
    heldout_source_size: int = arg(60, "prompts per held-out source and class scored each round (0 = all)")
    judge_template: Literal["request", "text"] = arg(
        "request",
        "the judge's question: request = the paper's (is this prompt problematic?); text = is this text harmful "
        "or toxic to answer or to say (fits statements such as ToxiGen as well as requests)",
    )
    control_judge: bool = arg(
        False,
        "also fine-tune a control judge each round with the same steps on the seeds plus as many random "
        "training-side prompts (dataset labels) as the attacker wrote: the baseline of the gain (eval_control.jsonl)",
    )
    transfer_sets: list[str] = arg(
        ["builtin:pyrit-harm"],
        "more transfer sets, judged on their response text with the dataset's label (ROC-AUC per round)",
    )
    reserved: Optional[str] = arg(
        None,
        "a file of prompts (JSONL/CSV/TXT, column prompt) kept out of the whole run: builtin prompts equal to one "
        "after normalisation or at embedder cosine >= leak_threshold are dropped from every split (e.g. the "
        "validation and test prompts of the guard the judge is built for; guard build writes this file)",
    )
    max_fpr: float = arg(0.10, "recall is reported at this false-positive rate (threshold chosen on validation)")


@dataclass
@with_defaults(output_dir=Default("runs/adversarial", "the run folder to evaluate"))
class AdversarialEvalConfig(OutputArgs):
    """detoxkit adversarial eval: per-round judge accuracy (vs the reference), attacker success and transfer.

    Reads a `detoxkit adversarial run` folder: every checkpoint-<round> judge (round 0 = the base model
    zero-shot, the reference standing in for GPT-4) is scored on the hold-out set (problematic prompts the
    reference misses + held-out benign-edgy prompts) unless eval.jsonl already has that round; attacker
    success per round = share of oracle-problematic prompts the judge called benign. Accuracy, precision,
    recall, F1 with 95% intervals, transfer ROC-AUC. Writes metrics.json, table.md and curve.png.
    """

    recompute: bool = arg(False, "score every round again even where eval.jsonl has it")
    plot: bool = arg(True, "write curve.png (matplotlib)")
