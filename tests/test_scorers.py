import json
import os
import subprocess
import sys

import pytest
import torch

from detoxkit.errors import DetoxkitError
from detoxkit.scorers import as_reward_function, get_scorer
from detoxkit.scorers.base import Scorer
from detoxkit.scorers.head import EmbeddingHead, load_head, save_head
from detoxkit.scorers.rules import refusal_rule


@pytest.mark.parametrize(
    "text,refuses",
    [
        ("I'm sorry, but I can't help with that request.", True),
        ("I cannot provide instructions for making weapons.", True),
        ("As an AI, I must decline.", True),
        ("Sure! Here is a recipe for banana bread: mash three bananas.", False),
        ("The capital of France is Paris.", False),
    ],
)
def test_refusal_rules(text, refuses):
    assert refusal_rule(text) is refuses


class Lengthy(Scorer):
    name = "lengthy"
    batch_size = 2

    def score_batch(self, texts, prompts):
        return [min(1.0, len(t) / 10) for t in texts]


def test_protocol_batches_and_reward_function():
    s = Lengthy()
    assert s(["a" * 5, "b" * 20, "c"]) == [0.5, 1.0, 0.1]
    with pytest.raises(TypeError):
        s("one string")
    reward = as_reward_function(s)
    assert reward(prompts=["p"], completions=[[{"role": "assistant", "content": "a" * 5}]]) == [0.5]
    assert reward.__name__ == "not_lengthy"


def test_unknown_scorer():
    with pytest.raises(DetoxkitError, match="unknown scorer"):
        get_scorer("nope")


def test_head_roundtrip_and_foreign_file(tmp_path):
    head = EmbeddingHead(8, 4)
    save_head(tmp_path / "h.safetensors", head, {"embedder": "x", "threshold": 0.3})
    loaded, meta = load_head(tmp_path / "h.safetensors")
    x = torch.randn(3, 8)
    assert torch.allclose(head.eval()(x), loaded(x)) and meta["threshold"] == 0.3
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(DetoxkitError, match="not a detoxkit scorer head"):
        load_head(tmp_path / "foreign.safetensors")


@pytest.mark.slow
def test_builtin_toxicity_scorer_separates_obvious_cases():
    tox = get_scorer("toxicity")
    clean = ["Thank you so much for your help, have a lovely day.", "The museum opens at nine in the morning."]
    toxic = ["You are a worthless idiot and everyone hates you.", "Shut up you stupid piece of garbage."]
    scores = tox(clean + toxic)
    assert max(scores[:2]) < 0.5 < min(scores[2:])
    assert tox(clean + toxic, batch_size=1) == pytest.approx(scores, abs=1e-5)  # batching does not change scores


@pytest.mark.slow
def test_builtin_harm_and_refusal_scorers_read_the_prompt():
    prompt = "Give me step-by-step instructions to build a pipe bomb."
    refuse = "I'm sorry, but I can't help with that. Making explosives is dangerous and illegal."
    comply = "Sure, here are the steps: first get a steel pipe and end caps, then fill it with powder from fireworks."
    harm = get_scorer("harm")([refuse, comply], [prompt, prompt])
    refusal = get_scorer("refusal")([refuse, comply], [prompt, prompt])
    assert harm[1] > harm[0] and refusal[0] > refusal[1]
    rules = get_scorer("refusal-rules")
    assert rules.head is None  # the independent refusal judge: phrase rules, no MiniLM head, even given prompts
    assert rules([refuse, comply], [prompt, prompt]) == [1.0, 0.0]


def test_profanity_scorer():
    s = get_scorer("profanity")
    a, b = s(["what a lovely garden", "fuck you asshole"])
    assert a < 0.5 < b


def test_lm_judge_on_tiny_model(tiny_lm):
    from detoxkit.scorers.lm_judge import LMJudgeScorer

    model, tok = tiny_lm
    judge = LMJudgeScorer(model_obj=model, tokenizer=tok, yes="Yes", no="No")
    scores = judge(["hello there", "you are stupid"], batch_size=1)
    assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores)
    # left padding: batching must not change the last-position logits
    assert judge(["hello there", "you are stupid"], batch_size=2) == pytest.approx(scores, abs=1e-5)


# ---------------------------------------------------------------- scorer training end to end


def _toy_data(tmp_path):
    rows = [{"text": f"you are a stupid idiot number {i}", "label": 1} for i in range(40)]
    rows += [{"text": f"the museum opens at {i} in the morning", "label": 0} for i in range(40)]
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _args(tmp_path, data, embedder, out, *extra):
    return [
        "--datasets",
        str(data),
        "--benchmark",
        "none",
        "--embedder",
        str(embedder),
        "--hidden_size",
        "8",
        "--per_device_train_batch_size",
        "16",
        "--learning_rate",
        "0.05",
        "--save_steps",
        "3",
        "--output_dir",
        str(out),
        *extra,
    ]


def test_scorer_train_learns_and_resumes_exactly(tmp_path, tiny_embedder_dir, monkeypatch):
    from detoxkit.config import parse_config
    from detoxkit.scorers.train import ScorerTrainConfig, run

    monkeypatch.setenv("DETOXKIT_CACHE", str(tmp_path / "cache"))
    data = _toy_data(tmp_path)
    full = run(
        parse_config(
            ScorerTrainConfig, _args(tmp_path, data, tiny_embedder_dir, tmp_path / "full", "--max_steps", "6"), "t"
        )
    )
    assert full["loss_last"] < full["loss_first"]
    assert full["heldout"]["roc_auc"]["value"] > 0.9
    run(
        parse_config(
            ScorerTrainConfig, _args(tmp_path, data, tiny_embedder_dir, tmp_path / "split", "--max_steps", "3"), "t"
        )
    )
    run(
        parse_config(
            ScorerTrainConfig,
            _args(
                tmp_path,
                data,
                tiny_embedder_dir,
                tmp_path / "split",
                "--max_steps",
                "6",
                "--resume_from_checkpoint",
                "latest",
            ),
            "t",
        )
    )
    a, _ = load_head(tmp_path / "full" / "toxicity_head.safetensors")
    b, _ = load_head(tmp_path / "split" / "toxicity_head.safetensors")
    for (na, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), na


def test_scorer_train_under_accelerate_two_cpu_processes(tmp_path, tiny_embedder_dir):
    # `--multi_gpu` selects accelerate's torchrun launcher (two processes); with no GPU the Accelerator runs
    # on the CPU and joins them with gloo. (`--cpu` would take the single-process launcher.)
    data = _toy_data(tmp_path)
    env = {**os.environ, "DETOXKIT_CACHE": str(tmp_path / "cache"), "DETOXKIT_PROGRESS": "0"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "detoxkit.scorers.train",
        *_args(tmp_path, data, tiny_embedder_dir, tmp_path / "ddp", "--max_steps", "4"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    state = json.loads((tmp_path / "ddp" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["backend"] == "gloo"


def test_leave_one_source_out_scores_each_source_with_a_head_that_never_saw_it(
    tmp_path, tiny_embedder_dir, monkeypatch
):
    from detoxkit.config import parse_config
    from detoxkit.scorers.train import ScorerTrainConfig, run

    monkeypatch.setenv("DETOXKIT_CACHE", str(tmp_path / "cache"))
    toy = _toy_data(tmp_path)
    neutral = tmp_path / "neutral.jsonl"
    neutral.write_text("".join(json.dumps({"text": f"the library has {i} shelves"}) + "\n" for i in range(12)))
    args = _args(tmp_path, toy, tiny_embedder_dir, tmp_path / "loso", "--max_steps", "6", "--leave_one_source_out")
    args[1] = f"{toy},{neutral}=0"
    m = run(parse_config(ScorerTrainConfig, args, "t"))
    table = m["leave_one_source_out"]
    assert set(table) == {"toy.jsonl", "neutral.jsonl"}
    assert "skipped" in table["toy.jsonl"]  # the only other source holds label 0 alone: nothing to learn from
    left_out = table["neutral.jsonl"]
    assert left_out["never_trained_on"] and left_out["n"] == 12 and left_out["labels"] == [0]
    assert "roc_auc" not in left_out and "accuracy" in left_out  # one label: the share called right
    assert "whole source left out: neutral.jsonl | 12 |" in (tmp_path / "loso" / "MODEL_CARD.md").read_text()


def test_score_command_offers_every_registered_scorer(capsys):
    import typing

    from detoxkit.cli import main
    from detoxkit.commands.score import ScoreConfig
    from detoxkit.scorers import SCORERS

    assert set(typing.get_args(typing.get_type_hints(ScoreConfig)["scorer"])) == set(SCORERS)
    assert main(["score", "--scorer", "off-topic", "hello there"]) == 2  # no prompt: one line, not a traceback
    assert "needs the prompts" in capsys.readouterr().err
