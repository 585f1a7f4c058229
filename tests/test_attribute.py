import json
import math

import pytest
import torch
from safetensors.torch import load_file

from detoxkit.attribute.config import AttributeTrainConfig, NadoTrainConfig
from detoxkit.attribute.nado_train import run as train_nado_only
from detoxkit.attribute.train import Corpus, train
from detoxkit.errors import DetoxkitError
from detoxkit.runs import read_jsonl

TEXTS = [
    "you are an idiot and I hate you",
    "the weather today is sunny with a light breeze",
    "stupid people like you ruin everything",
    "mix flour, water, salt and yeast to bake bread",
    "shut up, you idiot",
    "the quick brown fox jumps over the lazy dog",
    "I hate this stupid weather",
    "please answer the question politely and safely",
]


def e_scorer(texts):
    """A deterministic stand-in oracle: 'toxic' (1.0) when the text contains the letter e."""
    return [float("e" in t) for t in texts]


def idiot_scorer(texts):
    return [float(any(w in t for w in ("idiot", "hate", "stupid"))) for t in texts]


@pytest.fixture()
def corpus_file(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return path


def _cfg(model_dir, data, out, **kw):
    base = dict(
        model_name_or_path=str(model_dir),
        train_dataset=str(data),
        output_dir=str(out),
        max_train_samples=0,
        per_device_train_batch_size=4,
        reg_batch_size=2,
        samples_per_prompt=2,
        prompt_tokens=3,
        max_new_tokens=4,
        max_steps=4,
        steps_per_iteration=2,
        learning_rate=1e-3,
        nado_learning_rate=1e-3,
        nado_layers=1,
        nado_epochs=1,
        seed=5,
        schedule="sequential",
    )
    base.update(kw)
    return AttributeTrainConfig(**base)


def _weights(path):
    return load_file(str(path))


def test_regularized_run_trains_model_and_nado_and_logs(tiny_lm_dir, corpus_file, tmp_path):
    out = tmp_path / "run"
    m = train(_cfg(tiny_lm_dir, corpus_file, out), scorer=e_scorer)
    assert m["steps"] == 4 and len(m["history"]) == 2
    for h in m["history"]:
        assert all(torch.isfinite(torch.tensor(h[k])) for k in ("task_loss", "kl", "nado_loss"))
        assert h["kl"] >= 0
    before, after = _weights(tiny_lm_dir / "model.safetensors"), _weights(out / "final" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    from detoxkit.attribute import NadoModel

    nado = NadoModel.from_pretrained(out / "final" / "nado")
    assert nado.proj.weight.abs().sum() > 0  # the head starts at zero: it learned something
    rows = read_jsonl(out / "samples.jsonl")
    assert len(rows) == 2 * 2 * 2 * 2  # iterations × steps × prompts × samples
    assert all(r["toxicity"] == float("e" in r["continuation"]) for r in rows)
    assert (out / "checkpoint-4" / "nado.safetensors").exists()


def test_task_loss_falls_under_plain_fine_tuning(tiny_lm_dir, corpus_file, tmp_path):
    m = train(
        _cfg(
            tiny_lm_dir,
            corpus_file,
            tmp_path / "sft",
            method="sft",
            max_steps=12,
            steps_per_iteration=2,
            learning_rate=3e-3,
        ),
        scorer=e_scorer,
    )
    losses = [h["task_loss"] for h in m["history"]]
    assert losses[-1] < losses[0] - 0.5


@pytest.mark.parametrize("schedule", ["parallel", "sequential"])
def test_resumed_run_equals_uninterrupted(tiny_lm_dir, corpus_file, tmp_path, schedule):
    full, part = tmp_path / "full", tmp_path / "part"
    train(_cfg(tiny_lm_dir, corpus_file, full, max_steps=6, schedule=schedule), scorer=e_scorer)
    train(_cfg(tiny_lm_dir, corpus_file, part, max_steps=4, schedule=schedule), scorer=e_scorer)
    train(
        _cfg(tiny_lm_dir, corpus_file, part, max_steps=6, schedule=schedule, resume_from_checkpoint="latest"),
        scorer=e_scorer,
    )
    for name in ("model.safetensors", "nado/model.safetensors"):
        a, b = _weights(full / "final" / name), _weights(part / "final" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert read_jsonl(full / "samples.jsonl") == read_jsonl(part / "samples.jsonl")


def test_parallel_schedule_uses_previous_iteration_samples(tiny_lm_dir, corpus_file, tmp_path):
    out = tmp_path / "par"
    m = train(_cfg(tiny_lm_dir, corpus_file, out, max_steps=6, schedule="parallel"), scorer=e_scorer)
    rows = read_jsonl(out / "samples.jsonl")
    # iteration 0 bootstraps its own samples, then each iteration draws the next one's in the background
    # (the last one too, so that its checkpoint resumes into a longer run)
    assert sorted({(r["iteration"], r["for_iteration"]) for r in rows}) == [(0, 0), (0, 1), (1, 2), (2, 3)]
    assert all(h["sample_seconds"] > 0 and h["nado_seconds"] > 0 for h in m["history"])


def test_filtration_rl_and_adaptive(tiny_lm_dir, corpus_file, tmp_path):
    m = train(_cfg(tiny_lm_dir, corpus_file, tmp_path / "filt", method="filtration"), scorer=idiot_scorer)
    assert m["data"]["filtered_out"] == 4
    m = train(_cfg(tiny_lm_dir, corpus_file, tmp_path / "rl", method="rl"), scorer=e_scorer)
    assert all(torch.isfinite(torch.tensor(h["method_loss"])) for h in m["history"])
    m = train(_cfg(tiny_lm_dir, corpus_file, tmp_path / "ad", adaptive=True), scorer=idiot_scorer)
    rows = read_jsonl(tmp_path / "ad" / "samples.jsonl")
    # adaptive: only the training texts the scorer flags are continued and regularised (rows keep file order)
    assert rows and all(idiot_scorer([TEXTS[r["row"]]]) == [1.0] for r in rows)


def test_corpus_reg_rows():
    class Tok:
        truncation_side = "right"

        def __call__(self, text, **_):
            return {"input_ids": list(range(len(text.split())))}

    rows = [{"text": t} for t in TEXTS[:4]]
    c = Corpus(rows, Tok(), [0.9, 0.0, 0.6, 0.05], max_length=16, prompt_tokens=2, adaptive=True, min_weight=0.1)
    assert c.reg_rows([0, 1, 2, 3], 3) == [0, 2]  # most toxic first, below the floor never
    assert c.weights == [0.9, 0.0, 0.6, 0.05]
    # the ablation: the same rows, each weighing 1 (only "which rows" changes, not "how much")
    rows_only = Corpus(
        rows,
        Tok(),
        [0.9, 0.0, 0.6, 0.05],
        max_length=16,
        prompt_tokens=2,
        adaptive=True,
        min_weight=0.1,
        weighting=False,
    )
    assert rows_only.reg_rows([0, 1, 2, 3], 3) == [0, 2] and rows_only.weights == [1.0] * 4
    plain = Corpus(rows, Tok(), [0.9, 0.0, 0.6, 0.05], max_length=16, prompt_tokens=2)
    assert plain.reg_rows([3, 1, 0], 2) == [3, 1] and plain.weights == [1.0] * 4


def test_bad_configs_give_clear_errors(tiny_lm_dir, corpus_file, tmp_path):
    with pytest.raises(DetoxkitError, match="adaptive"):
        train(_cfg(tiny_lm_dir, corpus_file, tmp_path / "a", method="sft", adaptive=True), scorer=e_scorer)
    with pytest.raises(DetoxkitError, match="reg_batch_size"):
        train(_cfg(tiny_lm_dir, corpus_file, tmp_path / "b", reg_batch_size=0), scorer=e_scorer)
    with pytest.raises(DetoxkitError, match="filtration removed"):
        train(_cfg(tiny_lm_dir, corpus_file, tmp_path / "c", method="filtration"), scorer=lambda t: [1.0] * len(t))
    with pytest.raises(DetoxkitError, match="nado_layers"):
        train(_cfg(tiny_lm_dir, corpus_file, tmp_path / "d", nado_layers=9), scorer=e_scorer)


def test_nado_decoding_lowers_toxicity(tiny_lm_dir, corpus_file, tmp_path):
    """R trained on the tiny model's own labelled samples steers guided sampling away from what the oracle flags."""
    from detoxkit.attribute import NadoModel
    from detoxkit.attribute.sampling import sample_continuations
    from detoxkit.lm.load import load_model_and_tokenizer

    cfg = NadoTrainConfig(
        model_name_or_path=str(tiny_lm_dir),
        train_dataset=str(corpus_file),
        max_train_samples=0,
        output_dir=str(tmp_path / "nado"),
        iterations=12,
        prompts_per_iteration=8,
        samples_per_prompt=4,
        prompt_tokens=3,
        max_new_tokens=3,
        nado_layers=1,
        nado_learning_rate=1e-1,
        nado_epochs=5,
        nado_batch_size=8,
    )
    m = train_nado_only(cfg, scorer=e_scorer)
    # Each iteration's loss is on fresh samples whose toxic share varies (0.16-0.34 here), so it does not fall
    # steadily; what R learned is checked by what it does to sampling below.
    assert all(math.isfinite(h["nado_loss"]) for h in m["history"])
    model, tok = load_model_and_tokenizer(str(tiny_lm_dir))
    nado = NadoModel.from_pretrained(tmp_path / "nado" / "nado")
    prompts = [tok.encode(t, add_special_tokens=False)[:3] for t in TEXTS] * 32

    def toxic_rate(guide):
        conts = sample_continuations(
            model, prompts, 3, tok.pad_token_id, {tok.eos_token_id}, torch.Generator().manual_seed(0), nado=guide
        )
        return sum(e_scorer([tok.decode(c, skip_special_tokens=True)])[0] for c in conts) / len(conts)

    plain, guided = toxic_rate(None), toxic_rate(nado)
    assert plain >= 0.15 and guided <= plain / 2, (plain, guided)


def test_eval_table_with_nado_decoding_and_classification(tiny_lm_dir, corpus_file, tmp_path):
    from detoxkit.attribute.config import AttributeEvalConfig
    from detoxkit.attribute.evaluate import evaluate

    train_nado_only(
        NadoTrainConfig(
            model_name_or_path=str(tiny_lm_dir),
            train_dataset=str(corpus_file),
            max_train_samples=0,
            output_dir=str(tmp_path / "nado"),
            iterations=1,
            prompts_per_iteration=4,
            prompt_tokens=3,
            max_new_tokens=3,
            nado_layers=1,
        ),
        scorer=e_scorer,
    )
    cfg = AttributeEvalConfig(
        methods=[f"base={tiny_lm_dir}", f"guided={tiny_lm_dir}+nado={tmp_path / 'nado' / 'nado'}"],
        num_prompts=3,
        k=2,
        max_new_tokens=3,
        num_ppl_texts=4,
        num_mc_items=3,
        num_win_prompts=3,
        win_rate_judge=str(tiny_lm_dir),
        classification=True,
        num_classification_items=12,
        output_dir=str(tmp_path / "eval"),
    )
    m = evaluate(cfg, scorer=e_scorer)
    base, guided = m["results"]["base"], m["results"]["guided"]
    assert base["toxicity"]["k"] == 2 and base["toxicity"]["toxicity_probability"]["n"] == 3
    assert base["independent"]["scorer"] == "profanity" and base["independent"]["toxicity"]["k"] == 2
    assert set(base["mc"]) == {"mmlu", "commonsenseqa", "piqa"} and base["mc"]["piqa"]["acc"]["n"] == 3
    assert base["perplexity"]["value"] > 1 and guided["perplexity"]["value"] > 1
    assert guided["win_rate"]["n"] == 3 and "win_rate" not in base
    assert 0 <= base["classification"]["roc_auc"]["value"] <= 1
    table = (tmp_path / "eval" / "table.md").read_text()
    assert "| guided |" in table and "ROC-AUC" in table and "exp. max toxicity (profanity)" in table
    assert len(read_jsonl(tmp_path / "eval" / "generations.jsonl")) == 6
    with pytest.raises(DetoxkitError, match="does not exist"):
        evaluate(
            AttributeEvalConfig(
                methods=[f"x={tiny_lm_dir}+nado={tmp_path / 'missing'}"], output_dir=str(tmp_path / "e2")
            )
        )


def test_cli_help_lists_subcommands(capsys):
    from detoxkit.cli import main

    assert main(["attribute", "--help"]) == 0
    assert "nado-train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["attribute", "train", "--help"])
    assert "--reg_lambda" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, command, cls",
    [
        ("train", "train", "AttributeTrainConfig"),
        ("nado", "nado-train", "NadoTrainConfig"),
        ("eval", "eval", "AttributeEvalConfig"),
    ],
)
def test_shipped_configs_parse_and_name_their_command(name, command, cls):
    from pathlib import Path

    from detoxkit.attribute import config as configs
    from detoxkit.config import parse_config

    path = Path(__file__).resolve().parents[1] / "configs" / f"attribute_{name}.yaml"
    assert path.read_text().splitlines()[0] == f"# detoxkit attribute {command} --config configs/attribute_{name}.yaml"
    parse_config(getattr(configs, cls), ["--config", str(path)], "test")


class _ConstantLM(torch.nn.Module):
    """A 'model' whose next-token distribution is the same at every position: its logits are one parameter."""

    def __init__(self, logits, trainable=True):
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone(), requires_grad=trainable)

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1))


def test_regularizer_converges_to_the_i_projection_of_the_sampling_model():
    """p0 = [.5, .3, .2], R = [.9, .6, .3]: the I-projection q* ∝ p0·R is [.652, .261, .087]. With q* built from the
    model that drew the samples (frozen), SGD on λ·KL(q*‖p_θ) converges to it; built from the current p_θ, each
    step pulls towards p_θ·R again and p_θ runs off to [.995, .003, .002]. The first step's gradient is p_θ − q*,
    the direction of KL(q*‖p_θ)."""
    from types import SimpleNamespace

    from detoxkit.attribute.train import method_term

    p0, r_prob = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.9, 0.6, 0.3])
    q_star = p0 * r_prob / (p0 * r_prob).sum()
    model, teacher = _ConstantLM(p0.log()), _ConstantLM(p0.log(), trainable=False)
    r = torch.log(r_prob / (1 - r_prob))

    def nado(ids, attn):
        return r.expand(*ids.shape, -1), None

    entries = [{"prompt": [0], "conts": [[1]], "tox": [0.0]}]
    cfg = SimpleNamespace(method="regularized", guidance_strength=1.0, reg_lambda=1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(300):
        loss, _ = method_term(model, nado, entries, [1.0], cfg, 2, teacher=teacher)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            torch.testing.assert_close(model.logits.grad, p0 - q_star, atol=1e-5, rtol=1e-4)
        opt.step()
    torch.testing.assert_close(model.logits.detach().softmax(-1), q_star, atol=1e-3, rtol=1e-3)
    assert q_star.tolist() == pytest.approx([0.652, 0.261, 0.087], abs=1e-3)
