"""Every recipe a few steps on the tiny model in bfloat16 on the CPU: a dtype or device mismatch shows up here, not
on a user's GPU. Each asserts that the model really ran in bfloat16 and that what it produced is finite."""

import json
import math

import pytest
import torch

from detoxkit.lm.load import load_model_and_tokenizer

BF16 = dict(dtype="bfloat16")


def test_loading_gives_bfloat16_weights(tiny_lm_dir):
    model, _ = load_model_and_tokenizer(str(tiny_lm_dir), "bfloat16", "cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_scorer_train(tmp_path, tiny_embedder_dir, monkeypatch):
    from test_scorers import _args, _toy_data

    from detoxkit.config import parse_config
    from detoxkit.scorers.train import ScorerTrainConfig, run

    monkeypatch.setenv("DETOXKIT_CACHE", str(tmp_path / "cache"))
    args = _args(tmp_path, _toy_data(tmp_path), tiny_embedder_dir, tmp_path / "run", "--max_steps", "2")
    m = run(parse_config(ScorerTrainConfig, [*args, "--dtype", "bfloat16"], "t"))
    assert math.isfinite(m["loss_last"])


def test_acd_tune_and_generate(tiny_lm_dir, tmp_path):
    from test_acd import _write_anchors

    from detoxkit.acd.config import GenerateConfig, TuneConfig
    from detoxkit.acd.generate import run as generate
    from detoxkit.acd.tune import tune

    anchors = _write_anchors(tmp_path / "anchors.jsonl")
    m = tune(
        TuneConfig(
            model=str(tiny_lm_dir),
            anchors=str(anchors),
            max_steps=2,
            per_device_train_batch_size=1,
            save_steps=0,
            output_dir=str(tmp_path / "acd"),
            **BF16,
        )
    )
    assert math.isfinite(m["loss_sp_last"]) and math.isfinite(m["loss_ap_last"])
    out = generate(
        GenerateConfig(
            model=str(tiny_lm_dir),
            prompts_dir=str(tmp_path / "acd"),
            prompt=["hi", "bread?"],
            max_new_tokens=4,
            output=str(tmp_path / "gen.jsonl"),
            **BF16,
        )
    )
    assert out["prompts"] == 2 and len((tmp_path / "gen.jsonl").read_text().splitlines()) == 2


def test_sro_train(tiny_lm_dir, tmp_path):
    from test_sro import _cfg, even_length_screener, toxic_file  # noqa: F401 (toxic_file is a fixture)

    from detoxkit.sro.train import train

    data = tmp_path / "toxic.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["shut up, you idiot", "you are stupid"]))
    m = train(
        _cfg(tiny_lm_dir, data, tmp_path / "sro", max_steps=2, save_steps=0, **BF16), screener=even_length_screener
    )
    assert m["steps"] == 2 and all(math.isfinite(h["loss"]) for h in m["history"])


def test_adversarial_round(tiny_lm_dir, tmp_path):
    from test_adversarial import SEEDS, CountingOracle, ScriptedAttacker, _cfg

    from detoxkit.adversarial.judge import Judge
    from detoxkit.adversarial.loop import run_loop, start_log

    torch.manual_seed(0)
    kw = dict(train_mode="lora", lora_r=4, lora_alpha=8, **BF16)
    judge, attacker = Judge.load(str(tiny_lm_dir), **kw), ScriptedAttacker.load(str(tiny_lm_dir), **kw)
    assert next(judge.model.parameters()).dtype == torch.bfloat16
    start_log(tmp_path, SEEDS)
    (summary,) = run_loop(_cfg(tmp_path, 1), attacker, judge, CountingOracle(), None, tmp_path, log=lambda _: None)
    assert math.isfinite(summary["judge_loss_last"])
    assert all(0.0 <= p <= 1.0 for p in judge.predict_proba(["a", "b"]))


@pytest.mark.parametrize("method", ["regularized", "sft"])
def test_attribute_train(tiny_lm_dir, tmp_path, method):
    from test_attribute import TEXTS, _cfg, e_scorer

    from detoxkit.attribute.train import train

    data = tmp_path / "corpus.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    cfg = _cfg(
        tiny_lm_dir,
        data,
        tmp_path / method,
        method=method,
        max_steps=2,
        steps_per_iteration=2,
        schedule="sequential",
        **BF16,
    )
    m = train(cfg, scorer=e_scorer)
    assert m["steps"] == 2 and math.isfinite(m["history"][-1]["task_loss"])


@pytest.mark.parametrize("acd", [False, True])
def test_guard_chat(tiny_lm_dir, acd):
    from test_guard import ConstScreener

    from detoxkit.guard import Guard, GuardConfig

    cfg = GuardConfig(
        model=str(tiny_lm_dir),
        screener="off",
        max_new_tokens=4,
        acd_safe_prompt="Be safe." if acd else "off",
        acd_adv_prompt="Be bad." if acd else "off",
        **BF16,
    )
    guard = Guard.from_config(cfg)
    guard.screener = ConstScreener(0.1)
    assert guard.model.dtype == torch.bfloat16
    (r,) = guard.chat([[{"role": "user", "content": "hi"}]], temperature=0.7)
    assert r.trace["decode"]["decision"] == ("acd" if acd else "plain") and r.completion_tokens <= 4
