"""ACD recipe: contrastive decoding (KV cache, batching, window), OPO tuning, anchors, eval, CLI."""

import json

import pytest
import torch

from detoxkit.acd import SoftPrompt, generate, score_completions, stream
from detoxkit.acd.decode import Contrast, decode_steps
from detoxkit.core.contrastive import contrastive_logits
from detoxkit.errors import DetoxkitError
from detoxkit.lm.soft_prompt import positions_from_mask, splice_rows, template_pieces

SAFE = "You are a helpful assistant. Answer the question politely and safely."
ADV = "You are an idiot and I hate you."
PROMPTS = ["Rewrite the sentence: shut up.", "Is the weather sunny today?", "hi"]


@pytest.fixture(scope="module")
def lm():
    """A tiny model with larger weights, so that greedy outputs depend on the context (not one repeated token)."""
    from tiny import tiny_causal_lm

    model, tok = tiny_causal_lm(seed=0, hidden_size=64)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if "embed" in name else 0.15))
    return model, tok


def _ids(model, tok, prompts, safe, adv, alpha, window=None, n=10):
    steps = list(decode_steps(model, tok, prompts, safe, adv, Contrast(alpha, window=window), n))
    return torch.stack(steps, 1).tolist()


@torch.no_grad()
def _reference(model, tok, prompt, safe, adv, alpha, window=None, n=10):
    """Greedy ACD by recomputing both branches from scratch each step (no cache, no batching)."""
    before, after = template_pieces(tok, prompt)
    out = []
    for step in range(n):
        rows = [[before, safe.embeddings, after + out], [before, adv.embeddings, after + out]]
        e, m, _ = splice_rows(model, rows, tok.pad_token_id)
        logits = model(inputs_embeds=e, attention_mask=m, position_ids=positions_from_mask(m)).logits[:, -1]
        use = contrastive_logits(logits[0], logits[1], alpha) if window is None or step < window else logits[0]
        out.append(int(use.argmax()))
        if out[-1] == tok.eos_token_id:
            break
    return out


def test_cached_batched_decoding_equals_recomputation(lm):
    model, tok = lm
    safe, adv = SoftPrompt.from_text(model, tok, SAFE), SoftPrompt.from_text(model, tok, ADV)
    for window in (None, 3):
        got = _ids(model, tok, PROMPTS, safe, adv, 0.7, window)
        for i, p in enumerate(PROMPTS):
            ref = _reference(model, tok, p, safe, adv, 0.7, window)
            assert [t for t in got[i] if t >= 0] == ref
    assert len(set(got[0])) > 2  # not one repeated token: the check has teeth


def test_alpha_zero_equals_plain_generation_under_the_safe_prompt(lm):
    from detoxkit.lm.generate import generate as plain

    model, tok = lm
    got = generate(model, tok, PROMPTS, SAFE, ADV, alpha=0.0, max_new_tokens=10)
    want = [x[0] for x in plain(model, tok, PROMPTS, system=SAFE, max_new_tokens=10)]
    assert got == want


def test_batched_equals_one_by_one_and_window_is_a_prefix(lm):
    model, tok = lm
    kw = dict(alpha=0.5, max_new_tokens=10)
    assert generate(model, tok, PROMPTS, SAFE, ADV, batch_size=3, **kw) == [
        generate(model, tok, [p], SAFE, ADV, **kw)[0] for p in PROMPTS
    ]
    safe, adv = SoftPrompt.from_text(model, tok, SAFE), SoftPrompt.from_text(model, tok, ADV)
    full, win = _ids(model, tok, PROMPTS, safe, adv, 0.5), _ids(model, tok, PROMPTS, safe, adv, 0.5, window=4)
    assert [r[:4] for r in full] == [r[:4] for r in win]
    assert _ids(model, tok, PROMPTS, safe, adv, 0.5, window=10) == full


def test_min_new_tokens_holds_back_the_stop_token_like_transformers(lm):
    """A model that always wants to stop: without min_new_tokens it stops at once, with it after exactly n."""
    from detoxkit.lm.generate import generate as plain

    model, tok = lm
    safe, adv = SoftPrompt.from_text(model, tok, SAFE), SoftPrompt.from_text(model, tok, ADV)

    def favour_eos(module, args, logits):
        return logits.index_add(-1, torch.tensor([tok.eos_token_id]), torch.full((*logits.shape[:-1], 1), 100.0))

    hook = model.get_output_embeddings().register_forward_hook(favour_eos)
    try:
        assert [[t for t in r if t >= 0] for r in _ids(model, tok, PROMPTS, safe, adv, 0.5)] == [[tok.eos_token_id]] * 3
        steps = torch.stack(list(decode_steps(model, tok, PROMPTS, safe, adv, Contrast(0.5), 10, min_new_tokens=4)), 1)
        assert (
            steps.shape == (3, 5)
            and (steps[:, :4] != tok.eos_token_id).all()
            and (steps[:, 4] == tok.eos_token_id).all()
        )
        # the same semantics as transformers' generate, which the plain baseline uses
        ours = generate(model, tok, PROMPTS, SAFE, ADV, alpha=0.0, max_new_tokens=10, min_new_tokens=4)
        assert ours == [x[0] for x in plain(model, tok, PROMPTS, system=SAFE, max_new_tokens=10, min_new_tokens=4)]
    finally:
        hook.remove()


def test_contrast_changes_output_and_cfg_alpha_zero_is_safe(lm):
    model, tok = lm
    base = generate(model, tok, PROMPTS, SAFE, None, max_new_tokens=10)
    assert generate(model, tok, PROMPTS, SAFE, ADV, alpha=2.0, max_new_tokens=10) != base
    assert generate(model, tok, PROMPTS, SAFE, ADV, alpha=0.0, form="cfg", max_new_tokens=10) == base


def test_sampling_is_seeded_and_stream_matches_generate(lm):
    model, tok = lm
    kw = dict(alpha=0.5, max_new_tokens=8, do_sample=True, top_p=0.9, temperature=0.8, seed=3)
    a = generate(model, tok, PROMPTS, SAFE, ADV, **kw)
    assert a == generate(model, tok, PROMPTS, SAFE, ADV, **kw)
    texts = [""] * len(PROMPTS)
    for deltas in stream(model, tok, PROMPTS, SAFE, ADV, **kw):
        texts = [t + d for t, d in zip(texts, deltas)]
    assert [t.strip() for t in texts] == a


def test_score_completions_uses_the_contrastive_distribution(lm):
    model, tok = lm
    lp0, n0 = score_completions(model, tok, ["hi"], ["Sure."], SAFE, None)
    lp1, n1 = score_completions(model, tok, ["hi"], ["Sure."], SAFE, ADV, alpha=0.0)
    lp2, _ = score_completions(model, tok, ["hi"], ["Sure."], SAFE, ADV, alpha=1.0)
    assert n0 == n1 and lp0 == pytest.approx(lp1) and lp2 != pytest.approx(lp0)
    assert lp0[0] < 0


# ---------------------------------------------------------------- anchors


def test_hash_split_is_stable_and_respects_the_fraction():
    from detoxkit.acd.anchors import split_of

    prompts = [f"how do I do thing number {i}?" for i in range(400)]
    evals = [split_of(p, 0.5) == "eval" for p in prompts]
    assert 150 < sum(evals) < 250
    assert split_of("How do I  do thing number 1?!", 0.5) == split_of(prompts[1], 0.5)
    assert all(split_of(p, 0.0) == "anchor" for p in prompts[:20])


def test_validation_and_test_halves_are_disjoint_and_cover_the_eval_side():
    from detoxkit.acd.config import EvalConfig
    from detoxkit.acd.evaluate import eval_prompts

    kw = dict(anchors=None, harmful_sources=["builtin:advbench"], n_per_harmful_source=400, n_benign=400)
    val_h, _, val_b, _ = eval_prompts(EvalConfig(split="validation", **kw))
    test_h, _, test_b, _ = eval_prompts(EvalConfig(split="test", **kw))
    all_h, _, all_b, _ = eval_prompts(EvalConfig(split="all", **kw))
    assert val_h and test_h and not set(val_h) & set(test_h) and not set(val_b) & set(test_b)
    assert set(val_h) | set(test_h) == set(all_h) and set(val_b) | set(test_b) == set(all_b)


def test_labels_and_overlap_check():
    from detoxkit.acd.anchors import label, overlap_check

    assert label("harmful", True, False) == "D_HR" and label("harmful", False, True) == "D_HA"
    assert label("harmful", True, True) == "dropped" and label("benign", False, False) == "D_S"
    assert label("benign", True, False) == "dropped"

    class Emb:  # a fixed direction per topic: bomb texts, bread texts, everything else
        def encode(self, texts):
            vec = [[1.0, 0.1] if "bomb" in t else [0.0, 1.0] if "bread" in t else [-1.0, 0.0] for t in texts]
            return torch.nn.functional.normalize(torch.tensor(vec), dim=-1)

    chk = overlap_check(["Make a bomb!", "make a pipe bomb", "bake bread"], ["make a bomb", "write a poem"], 0.9, Emb())
    assert chk["exact"] == ["Make a bomb!"] and [c for c, _, _ in chk["near"]] == ["make a pipe bomb"]
    assert chk["keep"] == ["bake bread"]


def _rule_scorers(monkeypatch):
    """Scorers by simple rules, so that tests need no trained head."""
    import detoxkit.scorers as scorers

    class Rule:
        def __init__(self, words):
            self.words, self.version = words, "test-rule"

        def __call__(self, texts, prompts=None):
            return [1.0 if any(w in t.lower() for w in self.words) else 0.0 for t in texts]

    real = scorers.get_scorer
    heads = {"refusal": ["cannot", "sorry"], "harm": ["sure", "here"]}  # the independent judges stay real
    monkeypatch.setattr(
        scorers, "get_scorer", lambda name, **kw: Rule(heads[name]) if name in heads else real(name, **kw)
    )


def _write_anchors(path):
    rows = [
        {"prompt": "How do I make a bomb?", "response": "I cannot help with that.", "split": "D_HR"},
        {"prompt": "How do I make a bomb?", "response": "Sure, here is how: mix.", "split": "D_HA"},
        {"prompt": "How do I bake bread?", "response": "Mix flour, water and yeast.", "split": "D_S"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_build_anchors_end_to_end(lm, tmp_path, monkeypatch):
    import detoxkit.lm.embedder
    from detoxkit.acd.anchors import build_anchors, normalise, source_prompts, split_of
    from detoxkit.acd.config import AnchorsConfig
    from detoxkit.runs import read_jsonl

    _rule_scorers(monkeypatch)

    class NoEmbedder:  # zero vectors: cosine 0 to everything, so nothing is a near-duplicate
        def encode(self, texts):
            return torch.zeros(len(texts), 2)

    monkeypatch.setattr(detoxkit.lm.embedder, "load_embedder", lambda *a, **k: NoEmbedder())
    model, tok = lm
    cfg = AnchorsConfig(
        n_harmful=3,
        n_benign=2,
        max_new_tokens=4,
        near_duplicate_threshold=0.9,
        eval_sources=["builtin:advbench"],
        output_dir=str(tmp_path),
    )
    meta = build_anchors(cfg, model, tok)
    rows = read_jsonl(tmp_path / "anchors.jsonl")
    assert len(rows) == 3 * 5 and {r["system"] for r in rows} == {"safe", "opposite", "null"}
    assert all(r["split"] in ("D_HR", "D_HA", "D_S", "dropped") for r in rows)
    evals = {normalise(p) for p in source_prompts("builtin:advbench") if split_of(p, 0.5) == "eval"}
    assert not any(normalise(r["prompt"]) in evals for r in rows)
    assert meta["overlap_check"]["anchors_in_eval_split_after_filtering"] == 0


# ---------------------------------------------------------------- tune


def _tune_cfg(tmp_path, anchors, **kw):
    from detoxkit.acd.config import TuneConfig

    base = dict(
        anchors=str(anchors),
        safe_prompt=SAFE,
        opposite_prompt=ADV,
        learning_rate=0.05,
        max_steps=6,
        per_device_train_batch_size=1,
        save_steps=3,
        output_dir=str(tmp_path),
    )
    return TuneConfig(**{**base, **kw})


def test_tune_lowers_both_losses_and_leaves_the_model_unchanged(tmp_path):
    from tiny import tiny_causal_lm

    from detoxkit.acd.tune import tune
    from detoxkit.runs import read_jsonl

    model, tok = tiny_causal_lm(seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    anchors = _write_anchors(tmp_path / "anchors.jsonl")
    m = tune(_tune_cfg(tmp_path / "run", anchors), model, tok)
    assert m["loss_sp_last"] < m["loss_sp_first"] and m["loss_ap_last"] < m["loss_ap_first"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    sp = SoftPrompt.load(tmp_path / "run" / "safe_prompt.safetensors")
    init = SoftPrompt.from_text(model, tok, SAFE)
    assert sp.init_text == SAFE and not torch.allclose(sp.embeddings, init.embeddings)
    assert len(read_jsonl(tmp_path / "run" / "log.jsonl")) == 6


def test_tune_resume_equals_uninterrupted(tmp_path):
    import shutil

    from tiny import tiny_causal_lm

    from detoxkit.acd.tune import tune

    model, tok = tiny_causal_lm(seed=2)
    anchors = _write_anchors(tmp_path / "anchors.jsonl")
    tune(_tune_cfg(tmp_path / "a", anchors), model, tok)
    (tmp_path / "b").mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoint-3", tmp_path / "b" / "checkpoint-3")
    m = tune(_tune_cfg(tmp_path / "b", anchors, resume_from_checkpoint="latest"), model, tok)
    assert m["resumed_from"] == 3
    for name in ("safe_prompt", "adv_prompt"):
        a = SoftPrompt.load(tmp_path / "a" / f"{name}.safetensors").embeddings
        b = SoftPrompt.load(tmp_path / "b" / f"{name}.safetensors").embeddings
        assert torch.allclose(a, b, atol=1e-6)


def test_tune_with_an_empty_split_is_a_clear_error(tmp_path):
    from detoxkit.acd.tune import load_anchor_splits

    p = tmp_path / "a.jsonl"
    p.write_text(json.dumps({"prompt": "x", "response": "y", "split": "D_S"}) + "\n")
    with pytest.raises(DetoxkitError, match="D_HR, D_HA"):
        load_anchor_splits(p)


# ---------------------------------------------------------------- eval and CLI


def test_eval_end_to_end_and_cli(lm, tmp_path, monkeypatch, tiny_lm_dir):
    from detoxkit.acd.config import EvalConfig
    from detoxkit.acd.evaluate import evaluate
    from detoxkit.cli import main

    _rule_scorers(monkeypatch)
    model, tok = lm
    SoftPrompt.from_text(model, tok, SAFE).save(tmp_path / "safe_prompt.safetensors")
    SoftPrompt.from_text(model, tok, ADV).save(tmp_path / "adv_prompt.safetensors")
    cfg = EvalConfig(
        prompts_dir=str(tmp_path),
        anchors=None,
        n_per_harmful_source=2,
        n_benign=2,
        n_mc=2,
        n_ppl=2,
        harmful_sources=["builtin:advbench", "builtin:harmbench"],
        alphas=[0.5, 1.0],
        window=2,
        max_new_tokens=3,
        output_dir=str(tmp_path / "eval"),
    )
    m = evaluate(cfg, model, tok)
    assert m["n_harmful"] == 4 and m["eval_anchor_overlap"] == 0
    assert {"template_default", "manual_safe", "nID", "oID", "acd_a0.5", "acd_a1", "acd_a0.5_w2"} <= set(m["methods"])
    assert m["methods"]["acd_a0.5"]["mc_accuracy"]["n"] == 2
    assert (tmp_path / "eval" / "alpha_sweep.png").stat().st_size > 0
    assert "| acd_a0.5 |" in (tmp_path / "eval" / "report.md").read_text()
    ind = m["methods"]["acd_a0.5"]["independent"]["harmful"]  # every response in exactly one outcome
    parts = ("refused", "off_topic", "answered_safely", "answered_harmfully")
    assert sum(ind[k]["value"] for k in parts) == pytest.approx(1.0) and ind["harmless"]["n"] == 4
    assert m["scorers"]["independent"] == ["off-topic", "lm-judge"]
    assert m["scorers"]["shared_with_training_signal"] == ["refusal-rules"]  # the heads read the rules as a feature
    assert "answered safely" in (tmp_path / "eval" / "report.md").read_text()

    assert main(["acd", "--help"]) == 0
    assert (
        main(
            [
                "acd",
                "tune",
                "--model",
                str(tiny_lm_dir),
                "--anchors",
                str(tmp_path / "missing.jsonl"),
                "--output_dir",
                str(tmp_path / "t"),
            ]
        )
        == 2
    )
    # Prompts tuned for a model of another width are refused with a clear error (exit 2) ...
    args = ["--model", str(tiny_lm_dir), "--prompt", "hi,hello", "--max_new_tokens", "3"]
    assert main(["acd", "generate", "--prompts_dir", str(tmp_path), *args]) == 2
    # ... and prompts made for it decode.
    from detoxkit.lm.load import load_model_and_tokenizer

    small, stok = load_model_and_tokenizer(str(tiny_lm_dir))
    SoftPrompt.from_text(small, stok, SAFE).save(tmp_path / "small" / "safe_prompt.safetensors")
    SoftPrompt.from_text(small, stok, ADV).save(tmp_path / "small" / "adv_prompt.safetensors")
    out = tmp_path / "gen.jsonl"
    assert (
        main(
            [
                "acd",
                "generate",
                "--prompts_dir",
                str(tmp_path / "small"),
                *args[:2],
                "--prompt",
                "hi,hello",
                "--max_new_tokens",
                "3",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert len(out.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    "name,cls",
    [("anchors", "AnchorsConfig"), ("tune", "TuneConfig"), ("generate", "GenerateConfig"), ("eval", "EvalConfig")],
)
def test_shipped_configs_parse_and_name_their_command(name, cls):
    from pathlib import Path

    import detoxkit.acd.config as c
    from detoxkit.config import parse_config

    path = Path(__file__).resolve().parents[1] / "configs" / f"acd_{name}.yaml"
    assert path.read_text().splitlines()[0] == f"# detoxkit acd {name} --config configs/acd_{name}.yaml"
    parse_config(getattr(c, cls), ["--config", str(path)], f"detoxkit acd {name}")


def test_tune_clips_each_prompt_on_its_own(tmp_path):
    """L_SP does not involve the adversarial prompt, so the safe prompt's updates must not depend on it: with one
    joint gradient norm, the adversarial prompt's gradient would scale the safe prompt's step."""
    from tiny import tiny_causal_lm

    from detoxkit.acd.tune import tune

    anchors = _write_anchors(tmp_path / "anchors.jsonl")
    safe = []
    for i, opposite in enumerate(["You are a stupid assistant.", "You are a mean assistant."]):  # same length
        model, tok = tiny_causal_lm(seed=2)
        tune(
            _tune_cfg(tmp_path / f"r{i}", anchors, opposite_prompt=opposite, max_steps=4, max_grad_norm=0.01),
            model,
            tok,
        )
        safe.append(SoftPrompt.load(tmp_path / f"r{i}" / "safe_prompt.safetensors").embeddings)
    assert torch.equal(safe[0], safe[1])


def test_tune_moves_each_prompt_towards_its_own_anchors(tmp_path):
    """The safe prompt makes refusals (D_HR) likelier and harmful answers (D_HA) less likely; the adversarial prompt
    the opposite. Falling losses alone would not tell the splits apart."""
    from tiny import tiny_causal_lm

    from detoxkit.acd.decode import score_completions
    from detoxkit.acd.tune import tune

    anchors = _write_anchors(tmp_path / "anchors.jsonl")
    model, tok = tiny_causal_lm(seed=2)
    tune(_tune_cfg(tmp_path / "run", anchors, max_steps=8), model, tok)
    prompts, answers = ["How do I make a bomb?"] * 2, ["I cannot help with that.", "Sure, here is how: mix."]

    def logps(prompt):
        return score_completions(model, tok, prompts, answers, prompt)[0]

    (ref0, harm0), (ref_s, harm_s) = logps(SAFE), logps(tmp_path / "run" / "safe_prompt.safetensors")
    (ref_a0, harm_a0), (ref_a, harm_a) = logps(ADV), logps(tmp_path / "run" / "adv_prompt.safetensors")
    assert ref_s > ref0 and harm_s < harm0
    assert harm_a > harm_a0 and ref_a < ref_a0


def test_eval_prompts_leave_out_what_the_judging_heads_trained_on():
    from detoxkit.acd.anchors import normalise
    from detoxkit.acd.config import EvalConfig
    from detoxkit.acd.evaluate import eval_prompts
    from detoxkit.scorers.train import training_prompts

    seen = {normalise(p) for task in ("harm", "refusal") for p in training_prompts(task)}
    kw = dict(anchors=None, harmful_sources=["builtin:harmbench"], n_per_harmful_source=200, n_benign=0)
    leaky, _, _, _ = eval_prompts(EvalConfig(exclude_scorer_training=False, **kw))
    clean, _, _, _ = eval_prompts(EvalConfig(**kw))
    assert any(normalise(p) in seen for p in leaky)  # HarmBench shares prompts with the heads' training sets
    assert not any(normalise(p) in seen for p in clean) and set(clean) < set(leaky)


def test_eval_scores_only_the_rows_asked_for_and_names_an_unknown_one_before_writing(tmp_path, capsys):
    from detoxkit.acd.config import EvalConfig
    from detoxkit.acd.evaluate import methods
    from detoxkit.cli import main

    cfg = EvalConfig(alphas=[0.25, 0.5], window=0, only_methods=["soft_safe_only", "acd_a0.5"])
    assert [m["method"] for m in methods(cfg, None, None)] == ["soft_safe_only", "acd_a0.5"]
    out = tmp_path / "eval"
    args = [
        "acd",
        "eval",
        "--prompts_dir",
        str(tmp_path),
        "--only_methods",
        "acd_a0.5,acd_a9",
        "--output_dir",
        str(out),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "only_methods" in err and "acd_a9" in err and "Traceback" not in err and not out.exists()


def _bench_row(mc: float, harmless: float = 0.5) -> dict:
    return {
        "harmless_rate": {"value": 0.5},
        "independent": {"harmless_rate": {"value": harmless}, "over_refusal": {"value": 0.0}},
        "mc_accuracy": {"value": mc},
    }


def test_acd_benchmark_counts_a_difference_on_the_bound_as_within_it(load_benchmark):
    """MC 29/100 vs the manual prompt's 31/100 is within 0.02, though 0.29 - 0.31 is -0.020000000000000018: the
    target is met and the α with it qualifies (before, it was reported missed and the α was passed over)."""
    bench = load_benchmark("acd")

    ms = {m: _bench_row(0.3) for m in ("soft_safe_only", "nID", "oID")}
    ms["manual_safe"] = _bench_row(0.31)
    ms["acd_a0.25"], ms["acd_a0.5"] = _bench_row(0.29, harmless=0.4), _bench_row(0.28, harmless=0.9)
    flags = {(m, k): [True, False] for m in ms for k in ("harmless", "refused")}
    assert bench._targets(ms, "acd_a0.25", flags, "harmless_rate")["mc_accuracy_vs_manual_safe"]["met"]
    assert bench.choose_alpha(ms, [0.25, 0.5])[0] == 0.25  # α 0.5 is 3 points lower in MC: out
