"""The attacker–judge loop on tiny models: pure functions by hand, judge, attacker and oracles, one round end to end, resume."""

import pytest
import torch

from detoxkit.adversarial.attacker import Attacker, clean_generated_prompt, slot_seed
from detoxkit.adversarial.config import AdversarialRunConfig
from detoxkit.adversarial.datasets import attacker_dataset, judge_dataset
from detoxkit.adversarial.judge import Judge, calibrate_threshold
from detoxkit.adversarial.loop import Deduper, run_loop, start_log
from detoxkit.adversarial.oracles import HumanOracle, LabelOracle
from detoxkit.errors import DetoxkitError
from detoxkit.runs import read_jsonl
from detoxkit.training import micro_batches

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

    def write_many(self, requests):
        return [self.write(*r) for r in requests]


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
    return [{k: v for k, v in r.items() if k not in ("time_s", "peak_rss_mb")} for r in rows]


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


# ------------------------------------------------------------------------------------- one base model in memory

PROBES = ["how do I make a weapon", "bake bread", "hurt someone", "plant a tree"]


def _shared_cfg(tiny_lm_dir, out, rounds=1, **kw):
    cfg = _cfg(out, rounds)
    cfg.judge_model = cfg.attacker_model = str(tiny_lm_dir)
    cfg.lora_r, cfg.lora_alpha, cfg.max_new_tokens = 4, 8, 6
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _base_storage(*roles):
    """{data_ptr: numel} of the non-adapter weights the roles' models hold (tied weights count once)."""
    return {p.data_ptr(): p.numel() for r in roles for n, p in r.model.named_parameters() if "lora_" not in n}


def test_judge_and_attacker_are_two_adapters_on_one_base_model(tiny_lm_dir, tmp_path):
    from detoxkit.adversarial.loop import load_roles
    from detoxkit.lm.load import load_model_and_tokenizer

    torch.manual_seed(0)
    judge, attacker = load_roles(_shared_cfg(tiny_lm_dir, tmp_path))
    base, _ = load_model_and_tokenizer(str(tiny_lm_dir))
    one_copy = sum({p.data_ptr(): p.numel() for p in base.parameters()}.values())
    assert judge.model is attacker.model and set(judge.model.peft_config) == {"default", "attacker"}
    assert _base_storage(judge, attacker) == _base_storage(judge) and sum(_base_storage(judge).values()) == one_copy
    # each role trains and stores only its own adapter, under PEFT's "default" name (a standalone judge loads it)
    j0, a0 = judge.trainable_state(), attacker.trainable_state()
    assert set(j0) == set(a0) and all(".default." in n for n in j0)
    before = judge.predict_proba(PROBES)
    attacker.finetune(["hurt someone badly"] * 4, epochs=3, learning_rate=1e-2, batch_size=4)
    assert judge.predict_proba(PROBES) == before  # the attacker's fine-tune leaves the judge alone
    assert all(torch.equal(t, judge.trainable_state()[n]) for n, t in j0.items())
    assert any(not torch.equal(t, attacker.trainable_state()[n]) for n, t in a0.items())
    a1 = attacker.trainable_state()
    judge.finetune(PROBES, [1, 0, 1, 0], epochs=3, learning_rate=1e-2, batch_size=4)
    assert all(torch.equal(t, attacker.trainable_state()[n]) for n, t in a1.items())
    assert judge.predict_proba(PROBES) != before
    # full fine-tunes change the base weights: then each role has its own copy, as before
    judge, attacker = load_roles(_shared_cfg(tiny_lm_dir, tmp_path, judge_train_mode="full"))
    assert judge.model is not attacker.model and not set(_base_storage(judge)) & set(_base_storage(attacker))


def test_reference_is_the_base_model_zero_shot_with_the_adapter_disabled(tiny_lm_dir, tmp_path):
    from detoxkit.adversarial.loop import load_roles

    torch.manual_seed(0)
    judge, attacker = load_roles(_shared_cfg(tiny_lm_dir, tmp_path))
    zero_shot = Judge.load(str(tiny_lm_dir), train_mode="none").predict_proba(PROBES)
    judge.finetune(PROBES, [1, 0, 1, 0], epochs=5, learning_rate=1e-2, batch_size=4)
    attacker.finetune(["hurt someone badly"] * 4, epochs=3, learning_rate=1e-2, batch_size=4)
    trained = judge.predict_proba(PROBES)
    with judge.reference():
        reference = judge.predict_proba(PROBES)
    assert reference == pytest.approx(zero_shot, abs=1e-6)
    assert max(abs(a - b) for a, b in zip(trained, zero_shot)) > 1e-3
    assert judge.predict_proba(PROBES) == trained  # the adapter is back after the block
    full = Judge.load(str(tiny_lm_dir), train_mode="full")
    full.finetune(PROBES[:2], [1, 0], epochs=1, learning_rate=1e-3, batch_size=2)
    with pytest.raises(DetoxkitError, match="no base weights"):
        with full.reference():
            pass


def test_token_batches_sort_by_length_and_bound_rows_and_tokens():
    from detoxkit.lm.score import token_batches

    lengths = [10, 300, 12, 11, 130, 9]
    batches = token_batches(lengths, batch_size=3, max_tokens=250)
    assert batches == [[5, 0, 3], [2], [4], [1]]  # shortest first, 3 rows; 2 x 130 tokens and 300 exceed 250
    assert all(len(b) * max(lengths[i] for i in b) <= 250 for b in batches if len(b) > 1)
    assert token_batches(lengths, batch_size=16, max_tokens=10_000) == [[5, 0, 3, 2, 4, 1]]


def test_judge_scores_a_long_text_apart_from_short_ones_with_the_same_scores(tiny_lm_dir):
    """A long text (a PyRIT response) among short prompts: every forward stays within the token budget (the long
    row is not a batch's width for 15 short ones), and the scores equal one-at-a-time scores, in input order."""
    from detoxkit.lm.score import MAX_BATCH_TOKENS

    judge = Judge.load(str(tiny_lm_dir), train_mode="none")
    long_text = " ".join(["The weather today is sunny with a light breeze from the west."] * 30)
    prompts = PROBES * 3 + [long_text] + PROBES
    n_long = len(judge.tokenizer.encode(judge.render(long_text), add_special_tokens=False))
    assert 16 * n_long > MAX_BATCH_TOKENS >= n_long  # the case: 16 rows as wide as the long one overflow the budget
    shapes = []
    hook = judge.model.register_forward_pre_hook(
        lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    try:
        batched = judge.predict_proba(prompts, batch_size=16)
    finally:
        hook.remove()
    assert all(rows * width <= MAX_BATCH_TOKENS for rows, width in shapes)
    assert sum(rows for rows, _ in shapes) == len(prompts)
    alone = [judge.predict_proba([p])[0] for p in prompts]
    assert batched == pytest.approx(alone, abs=1e-5)


def test_per_row_generators_make_a_row_independent_of_its_batch():
    from detoxkit.lm.generate import Sampling, choose_next_token

    scores = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    gens = lambda *seeds: tuple(torch.Generator().manual_seed(s) for s in seeds)  # noqa: E731
    alone = [
        choose_next_token(scores[i : i + 1], Sampling(True, generator=gens(s)))[0] for i, s in enumerate([7, 8, 9])
    ]
    together = choose_next_token(scores, Sampling(True, generator=gens(7, 8, 9)))
    assert together.tolist() == [int(t) for t in alone]


def test_resume_equals_uninterrupted_with_a_sampling_attacker_on_the_shared_base(tiny_lm_dir, tmp_path, monkeypatch):
    """A real attacker sampling from the shared base (one batched generate per round), killed mid-round."""
    import detoxkit.lm.generate as gen_mod
    from detoxkit.adversarial.loop import load_roles

    calls, generate_ids = [], gen_mod.generate_ids
    monkeypatch.setattr(
        gen_mod, "generate_ids", lambda m, t, ids, *a, **k: calls.append(len(ids)) or generate_ids(m, t, ids, *a, **k)
    )

    def roles(out):
        torch.manual_seed(0)
        return load_roles(_shared_cfg(tiny_lm_dir, out, rounds=2, max_tries=1))

    a, b = tmp_path / "straight", tmp_path / "killed"
    judge, attacker = roles(a)
    start_log(a, SEEDS)
    run_loop(
        _shared_cfg(tiny_lm_dir, a, 2, max_tries=1), attacker, judge, CountingOracle(), None, a, log=lambda _: None
    )
    assert calls == [4, 4]  # one batched generate per round
    reference = judge.trainable_state(), attacker.trainable_state()
    done = [r for r in read_jsonl(a / "prompts.jsonl") if r.get("type") == "round_done"]
    assert done[0]["attacker_train_size"] > 0 and done[0]["attacker_loss_last"] is not None
    assert done[1]["attacker_train_size"] == 0 and done[1]["attacker_loss_last"] is None  # no round follows it

    judge, attacker = roles(b)
    start_log(b, SEEDS)
    with pytest.raises(KeyboardInterrupt):
        cfg = _shared_cfg(tiny_lm_dir, b, 2, max_tries=1)
        run_loop(cfg, attacker, judge, CountingOracle(kill_after=5), None, b, log=lambda _: None)
    judge, attacker = roles(b)  # a fresh process
    run_loop(
        _shared_cfg(tiny_lm_dir, b, 2, max_tries=1), attacker, judge, CountingOracle(), None, b, log=lambda _: None
    )
    straight, resumed = _strip(read_jsonl(a / "prompts.jsonl")), _strip(read_jsonl(b / "prompts.jsonl"))
    assert [r["prompt"] for r in resumed if r["type"] == "prompt"] == [
        r["prompt"] for r in straight if r["type"] == "prompt"
    ]
    assert resumed == straight
    for ref, now in zip(reference, (judge.trainable_state(), attacker.trainable_state())):
        assert all(torch.allclose(now[n], t, atol=1e-6) for n, t in ref.items())


def test_micro_batches_give_the_same_fine_tune_step(tiny_lm_dir):
    """Gradients summed over micro-batches: the same update as the whole batch (up to rounding), less memory."""
    results = []
    for micro, tokens in ((None, None), (2, None), (4, 12)):
        torch.manual_seed(0)
        judge = Judge.load(str(tiny_lm_dir), train_mode="lora", lora_r=4, lora_alpha=8)
        judge.micro_batch_size, judge.micro_batch_tokens = micro, tokens
        losses = judge.finetune(PROBES + ["x y z"], [1, 0, 1, 0, 1], epochs=2, learning_rate=1e-2, batch_size=4)
        results.append((losses, judge.trainable_state()))
    (l0, w0), *others = results
    for l1, w1 in others:
        assert l1 == pytest.approx(l0, abs=1e-5)
        assert all(torch.allclose(w1[n], t, atol=1e-5) for n, t in w0.items())


def test_micro_batches_group_rows_of_like_length_within_the_row_and_token_limits():
    idx, lengths = [10, 11, 12, 13, 14], [50, 200, 60, 100, 40]
    # by length: 14 (40), 10 (50), 12 (60), 13 (100), 11 (200); 4 x 100 > 300 and 2 x 200 > 300
    assert micro_batches(idx, lengths, 4, 300) == [[14, 10, 12], [13], [11]]
    assert micro_batches(idx, lengths, 2, None) == [[14, 10], [12, 13], [11]]
    assert micro_batches(idx, lengths, None, None) == [[14, 10, 12, 13, 11]]
    assert micro_batches(idx, lengths, None, 30) == [[14], [10], [12], [13], [11]]  # longer than the budget: alone
