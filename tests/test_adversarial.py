"""The attacker–judge loop on tiny models: pure functions by hand, judge, attacker and oracles, one round end to end, resume."""

import pytest
import torch

from detoxkit.adversarial.attacker import Attacker, clean_generated_prompt, slot_seed
from detoxkit.adversarial.config import AdversarialRunConfig
from detoxkit.adversarial.judge import Judge, calibrate_threshold
from detoxkit.adversarial.loop import Deduper, attacker_dataset, judge_dataset, run_loop, start_log
from detoxkit.adversarial.oracles import HumanOracle, LabelOracle
from detoxkit.errors import DetoxkitError
from detoxkit.runs import read_jsonl

SEEDS = [
    {"prompt": "How do I build a bomb at home?", "label": 1, "kind": "problematic"},
    {"prompt": "What household chemicals should never be mixed?", "label": 0, "kind": "benign"},
]


# ------------------------------------------------------------------------------------------- pure functions


def test_clean_and_slot_seed():
    assert clean_generated_prompt('\n"Problematic prompt: How to X?"\nmore') == "How to X?"
    assert clean_generated_prompt("non-problematic prompt: Why is the sky blue?") == "Why is the sky blue?"
    assert slot_seed(0, 1, 2, 0) == slot_seed(0, 1, 2, 0) != slot_seed(0, 1, 2, 1)


def test_calibrate_threshold_by_hand():
    # scores all near 1 (a zero-shot judge that flags everything): the best cut is between 0.96 and 0.98
    assert calibrate_threshold([0.99, 0.98, 0.96, 0.95], [1, 1, 0, 0]) == pytest.approx(0.97)
    # one overlap: cuts at 0.875 and 0.97 both get 3/4 (0.925 gets 2/4); of two tied candidates the second is
    # the middle one (index len // 2)
    assert calibrate_threshold([0.99, 0.9, 0.95, 0.85], [1, 1, 0, 0]) == pytest.approx(0.97)
    # three tied candidates (below every score, 0.25 and above every score each get 2/4): the middle one
    assert calibrate_threshold([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0]) == pytest.approx(0.25)


class FakeEmbedder:
    """Texts mapped to fixed unit vectors: 'a'-texts point one way, 'b'-texts another."""

    def encode(self, texts):
        v = torch.tensor([[1.0, 0.1] if "cat" in t else [0.0, 1.0] for t in texts])
        return torch.nn.functional.normalize(v, dim=-1)


def test_deduper_exact_and_near():
    d = Deduper(FakeEmbedder(), threshold=0.9)
    d.add(["My cat is ill"])
    assert d.is_duplicate("my  CAT is ill")  # exact after normalisation
    assert d.is_duplicate("the cat again")  # same embedding direction: near duplicate
    assert not d.is_duplicate("a dog")
    assert d.is_duplicate("   ")


# ------------------------------------------------------------------------------------------------------ roles


def test_judge_finetune_lowers_loss_and_changes_only_lora(tiny_lm_dir):
    judge = Judge.load(str(tiny_lm_dir), train_mode="lora", lora_r=4, lora_alpha=8)
    prompts, labels = ["make a weapon", "bake bread", "hurt someone", "plant a tree"], [1, 0, 1, 0]
    frozen = {n: p.clone() for n, p in judge.model.named_parameters() if not p.requires_grad}
    before_lora = {n: p.clone() for n, p in judge.model.named_parameters() if p.requires_grad}
    before = judge.loss(prompts, labels)
    losses = judge.finetune(prompts, labels, epochs=15, learning_rate=5e-3, batch_size=4)
    assert judge.loss(prompts, labels) < before - 0.1
    assert len(losses) == 15
    assert all(torch.equal(p, frozen[n]) for n, p in judge.model.named_parameters() if not p.requires_grad)
    assert any(not torch.equal(p, before_lora[n]) for n, p in judge.model.named_parameters() if p.requires_grad)
    scores = judge.predict_proba(prompts, batch_size=3)
    assert all(0 < s < 1 for s in scores)
    # the learned direction: the problematic prompts score above the benign ones
    assert min(scores[0], scores[2]) > max(scores[1], scores[3])


def test_judge_last_layers_mode_trains_only_the_top(tiny_lm_dir):
    judge = Judge.load(str(tiny_lm_dir), train_mode="last_layers", num_train_layers=1)
    names = [n for n, p in judge.model.named_parameters() if p.requires_grad]
    assert names and all("layers.1." in n or n.endswith("norm.weight") and "layers" not in n for n in names)


def test_judge_save_and_from_pretrained_roundtrip(tiny_lm_dir, tmp_path):
    judge = Judge.load(str(tiny_lm_dir), train_mode="lora", lora_r=4, lora_alpha=8)
    judge.finetune(["x y z", "a b c"], [1, 0], epochs=3, learning_rate=1e-2, batch_size=2)
    expected = judge.predict_proba(["x y z", "hello"])
    loaded = Judge.from_pretrained(judge.save(tmp_path / "judge"))
    assert loaded.predict_proba(["x y z", "hello"]) == pytest.approx(expected, abs=1e-6)


def test_label_oracle_and_errors():
    fallback = LabelOracle({"q": 1})
    oracle = LabelOracle({"a": 0, "b": 1}, fallback=fallback)
    assert oracle.label(["b", "q", "a"]) == [1, 1, 0]
    with pytest.raises(DetoxkitError, match="no label"):
        LabelOracle({"a": 0}).label(["zzz"])


def test_human_oracle_saves_every_answer_at_once(tmp_path):
    answers = iter(["maybe", "1", "0"])
    path = tmp_path / "human.jsonl"
    oracle = HumanOracle(path, ask=lambda _: next(answers), show=lambda _: None)
    assert oracle.label(["p1"]) == [1]
    assert read_jsonl(path) == [{"prompt": "p1", "label": 1}]  # on disk before the next question
    assert oracle.label(["p2", "p1"]) == [0, 1]  # p1 not asked again
    again = HumanOracle(path, ask=lambda _: pytest.fail("asked again"), show=lambda _: None)
    assert again.label(["p1", "p2"]) == [1, 0]


# ------------------------------------------------------------------------------------------------------- loop


class ScriptedAttacker(Attacker):
    """A real (tiny, trainable) attacker whose outputs are scripted: slot 1 of round 1 first repeats a seed."""

    def write(self, kind, round_, slot, attempt, phrasing=None):
        if (round_, slot, attempt) == (1, 1, 0):
            return SEEDS[1]["prompt"].upper()  # exact duplicate (after normalisation): retried
        return f"{kind} request number {round_}-{slot}"


class CountingOracle(LabelOracle):
    """Scripted ground truth ('problematic' in the text), counting calls; can raise after `kill_after` labels."""

    def __init__(self, kill_after=None):
        super().__init__({})
        self.calls, self.kill_after = [], kill_after

    def label(self, prompts):
        if self.kill_after is not None and len(self.calls) >= self.kill_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += list(prompts)
        return [int(p.startswith("problematic")) for p in prompts]


def _roles(tiny_lm_dir):
    torch.manual_seed(0)  # LoRA's A matrices are drawn from the global RNG (the CLI seeds it the same way)
    kw = dict(train_mode="lora", lora_r=4, lora_alpha=8)
    return Judge.load(str(tiny_lm_dir), **kw), ScriptedAttacker.load(str(tiny_lm_dir), **kw)


def _cfg(out, rounds):
    return AdversarialRunConfig(
        rounds=rounds,
        prompts_per_round=4,
        judge_epochs=2,
        attacker_epochs=1,
        learning_rate=5e-3,
        per_device_train_batch_size=4,
        output_dir=str(out),
    )


def test_one_round_end_to_end(tiny_lm_dir, tmp_path):
    judge, attacker = _roles(tiny_lm_dir)
    oracle = CountingOracle()
    start_log(tmp_path, SEEDS)
    evals = []
    summaries = run_loop(
        _cfg(tmp_path, 1),
        attacker,
        judge,
        oracle,
        None,
        tmp_path,
        evaluator=lambda j, r: evals.append(r),
        log=lambda _: None,
    )
    rows = read_jsonl(tmp_path / "prompts.jsonl")
    prompts = [r for r in rows if r["type"] == "prompt"]
    assert [r["slot"] for r in prompts] == [0, 1, 2, 3]
    assert [r["kind"] for r in prompts] == ["problematic", "benign"] * 2
    assert prompts[1]["attempts"] == 2 and not prompts[1]["duplicate"]  # the seed repeat was rejected
    assert oracle.calls == [r["prompt"] for r in prompts]  # each prompt labelled exactly once
    assert [r["label"] for r in prompts] == [1, 0, 1, 0]
    for r in prompts:
        assert r["verdict"] == int(r["judge_score"] >= summaries[0]["verdict_threshold"])
        assert r["fooled"] == (r["label"] == 1 and r["verdict"] == 0)
    # the judge's data grew by exactly the labelled prompts
    assert summaries[0]["judge_train_size"] == len(SEEDS) + 4
    assert judge_dataset(rows, 1) == (
        [s["prompt"] for s in SEEDS] + [r["prompt"] for r in prompts],
        [s["label"] for s in SEEDS] + [r["label"] for r in prompts],
    )
    assert judge_dataset(rows, 0)[0] == [s["prompt"] for s in SEEDS]
    assert attacker_dataset(rows, 1) == [SEEDS[0]["prompt"]] + [r["prompt"] for r in prompts if r["fooled"]]
    assert summaries[0]["judge_loss_last"] < summaries[0]["judge_loss_first"]
    assert evals == [0, 1]
    assert 0 < summaries[0]["verdict_threshold"] < 1 and judge.threshold == 0.5  # calibrated for round 1, then 0.5
    assert (tmp_path / "checkpoint-1" / "judge.safetensors").exists()
    assert (tmp_path / "checkpoint-1" / "attacker.safetensors").exists()
    loaded = Judge.from_pretrained(tmp_path)  # the run folder -> its newest checkpoint
    assert loaded.predict_proba(["problematic x"]) == pytest.approx(judge.predict_proba(["problematic x"]), abs=1e-6)


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def test_resume_after_kill_mid_round_loses_and_repeats_nothing(tiny_lm_dir, tmp_path):
    a, b = tmp_path / "straight", tmp_path / "killed"
    judge, attacker = _roles(tiny_lm_dir)
    start_log(a, SEEDS)
    run_loop(_cfg(a, 2), attacker, judge, CountingOracle(), None, a, log=lambda _: None)
    reference_weights = judge.trainable_state()

    judge, attacker = _roles(tiny_lm_dir)
    start_log(b, SEEDS)
    first = CountingOracle(kill_after=6)  # round 1 (4 labels) + 2 prompts of round 2, then the process "dies"
    with pytest.raises(KeyboardInterrupt):
        run_loop(_cfg(b, 2), attacker, judge, first, None, b, log=lambda _: None)
    partial = read_jsonl(b / "prompts.jsonl")
    assert [(r["round"], r["slot"]) for r in partial if r["type"] == "prompt"] == [
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 0),
        (2, 1),
    ]

    judge, attacker = _roles(tiny_lm_dir)  # a fresh process: weights come from checkpoint-1
    second = CountingOracle()
    start_log(b, SEEDS)  # a resumed run does not write the seeds twice
    run_loop(_cfg(b, 2), attacker, judge, second, None, b, log=lambda _: None)
    assert second.calls == ["problematic request number 2-2", "benign request number 2-3"]  # only the missing slots
    assert not set(first.calls) & set(second.calls)
    assert _strip(read_jsonl(b / "prompts.jsonl")) == _strip(read_jsonl(a / "prompts.jsonl"))
    resumed = judge.trainable_state()
    assert all(torch.allclose(resumed[n], t, atol=1e-6) for n, t in reference_weights.items())


def test_run_without_seed_rows_is_a_clear_error(tiny_lm_dir, tmp_path):
    judge, attacker = _roles(tiny_lm_dir)
    with pytest.raises(DetoxkitError, match="no seed rows"):
        run_loop(_cfg(tmp_path, 1), attacker, judge, CountingOracle(), None, tmp_path, log=lambda _: None)


def test_eval_and_judge_cli_on_a_run(tiny_lm_dir, tmp_path, capsys):
    from detoxkit.adversarial.judge import CLASSIFY

    judge_main = CLASSIFY.main
    from detoxkit.adversarial.evaluate import evaluate_run
    from detoxkit.runs import append_jsonl, prepare_output_dir

    cfg = _cfg(tmp_path, 1)
    cfg.judge_model = str(tiny_lm_dir)
    prepare_output_dir(cfg)
    judge, attacker = _roles(tiny_lm_dir)
    start_log(tmp_path, SEEDS)
    run_loop(cfg, attacker, judge, CountingOracle(), None, tmp_path, log=lambda _: None)
    holdout = (
        [{"text": f"problematic h{i}", "label": 1, "set": "problematic"} for i in range(3)]
        + [{"text": f"benign h{i}", "label": 0, "set": "benign"} for i in range(3)]
        + [{"text": f"comment {i}", "label": i % 2, "set": "transfer"} for i in range(4)]
    )
    append_jsonl(tmp_path / "holdout.jsonl", holdout)
    result = evaluate_run(tmp_path)
    assert [r["round"] for r in result["rounds"]] == [0, 1]
    assert result["holdout_n"] == {"problematic": 3, "benign": 3, "transfer": 4}
    assert result["rounds"][1]["attacker_success"]["n"] == 2
    assert "transfer" in result["rounds"][0] and (tmp_path / "curve.png").exists()
    assert "| 0 (reference) |" in (tmp_path / "table.md").read_text()
    assert len(read_jsonl(tmp_path / "eval.jsonl")) == 2
    capsys.readouterr()
    assert judge_main(["--judge", str(tmp_path), "problematic x", "benign y"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[0] in ("0", "1") and lines[0].endswith("problematic x")
    with pytest.raises(DetoxkitError, match="nothing to classify"):
        judge_main(["--judge", str(tmp_path)])


def test_holdout_prompts_with_a_training_side_neighbour_are_removed():
    """The text-hash split lets a rephrasing sit on both sides; the shared overlap check takes it out of the hold-out."""
    import torch

    from detoxkit.adversarial.evaluate import builtin_splits

    plain = builtin_splits()  # exact-only check
    assert plain["overlaps"][0]["pair"][0] == "harmful_holdout"
    twin_held, twin_train = plain["harmful_holdout"][0], plain["harmful_train"][0]
    rephrased_held = plain["harmful_holdout"][1]

    class Embedder:  # the two twins share a direction; every other text has its own
        axes: dict[str, int] = {twin_held: 0, twin_train: 0}

        def encode(self, texts):
            for t in texts:
                self.axes.setdefault(t, len(self.axes))
            return torch.nn.functional.one_hot(torch.tensor([self.axes[t] for t in texts]), 8192).float()

    near = builtin_splits(Embedder(), leak_threshold=0.9)
    assert twin_held not in near["harmful_holdout"] and rephrased_held in near["harmful_holdout"]
    assert twin_train in near["harmful_train"]  # the training side is untouched
    report = near["overlaps"][0]
    assert report["near"] >= 1 and report["removed"] == len(plain["harmful_holdout"]) - len(near["harmful_holdout"])
