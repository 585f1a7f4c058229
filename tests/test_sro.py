import json
import math

import pytest
import torch

from detoxkit.errors import DetoxkitError
from detoxkit.lm.score import completion_logprobs as completion_logps
from detoxkit.runs import read_jsonl
from detoxkit.sro.config import SroEvalConfig, SroTrainConfig
from detoxkit.sro.train import follower_verdicts, pick_candidate, screened_loss, train, verdict_flips
from detoxkit.training import batch_indices
from detoxkit.training import optimizer_step as policy_step

TOXIC = [
    "shut up, you idiot",
    "you are stupid and I hate you",
    "stupid people ruin everything",
    "get lost, idiot",
    "I hate this stupid weather",
    "you idiot, stop it",
]


def even_length_screener(texts):
    """A deterministic stand-in screener: 'toxic' (1.0) when the text length is odd."""
    return [float(len(t) % 2) for t in texts]


def fail_all(texts):
    return [1.0] * len(texts)


def pass_all(texts):
    return [0.0] * len(texts)


def word_overlap(inputs, outputs):
    """A scripted similarity: Jaccard overlap of lower-cased word sets."""
    out = []
    for x, y in zip(inputs, outputs):
        a, b = set(x.lower().split()), set(y.lower().split())
        out.append(len(a & b) / len(a | b) if a | b else 0.0)
    return out


@pytest.fixture()
def toxic_file(tmp_path):
    path = tmp_path / "toxic.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TOXIC))
    return path


def _cfg(model_dir, data, out, **kw):
    base = dict(
        model_name_or_path=str(model_dir),
        train_dataset=str(data),
        output_dir=str(out),
        max_new_tokens=6,
        per_device_train_batch_size=3,
        max_steps=4,
        save_steps=2,
        logging_steps=1,
        learning_rate=1e-3,
        seed=3,
        screener_min_similarity=0.0,
        leak_threshold=2.0,  # exact-match leak check only: no embedder to load
    )  # toxicity-only follower unless a test asks for the similarity gate
    base.update(kw)
    return SroTrainConfig(**base)


def _final_params(out):
    from safetensors.torch import load_file

    return load_file(str(out / "final" / "model.safetensors"))


def test_batch_indices_are_seeded_epochs():
    first = batch_indices(0, 6, 6, seed=1)
    assert sorted(first) == list(range(6))  # one epoch = one permutation
    assert batch_indices(1, 6, 6, seed=1) != first or batch_indices(2, 6, 6, seed=1) != first
    assert batch_indices(3, 6, 4, seed=1) == batch_indices(3, 6, 4, seed=1)


def test_feedback_noise_flip_rate():
    flips = [f for s in range(200) for f in verdict_flips(s, 10, 0.2, seed=0)]
    assert 0.15 < sum(flips) / len(flips) < 0.25
    assert not any(verdict_flips(0, 10, 0.0, seed=0))


def test_follower_fails_clean_but_off_topic_paraphrase():
    x = ["you are a fucking idiot , stop editing this page", "shut up about the damn weather"]
    y = ["Dear Sarah, hope all is well", "please stop talking about the weather"]
    tox = [0.05, 0.1]  # the toxicity screener passes both
    sims = word_overlap(x, y)  # 0/16 and 3/9 by hand
    assert sims == [0.0, pytest.approx(1 / 3)]
    assert follower_verdicts(y, tox, None, 0.5, 0.0) == [True, True]  # toxicity-only: the fixed polite text passes
    assert follower_verdicts(y, tox, sims, 0.5, 0.25) == [False, True]  # content-aware: it now fails
    assert follower_verdicts(["", "x"], [0.0, 0.9], [1.0, 1.0], 0.5, 0.0) == [False, False]  # empty / toxic


def test_similarity_gate_fails_a_fixed_polite_text(tiny_lm_dir, toxic_file, tmp_path, monkeypatch):
    """The first benchmark's collapse, scripted: the rewriter emits one fixed polite text and the screener passes
    everything. Without the gate every paraphrase passes (DPO pulls the fixed text up); with it every one fails
    (the push-down branch hits it)."""
    import detoxkit.sro.rewrite as rewrite

    fixed = "Dear Sarah, hope all is well"
    monkeypatch.setattr(rewrite, "decode", lambda tok, ids: fixed)
    kw = dict(max_steps=2, save_steps=0, screener_min_similarity=0.5)
    train(_cfg(tiny_lm_dir, toxic_file, tmp_path / "gate", **kw), screener=pass_all, similarity=word_overlap)
    train(
        _cfg(tiny_lm_dir, toxic_file, tmp_path / "nogate", **{**kw, "screener_min_similarity": 0.0}),
        screener=pass_all,
        similarity=word_overlap,
    )
    gated, plain = (
        read_jsonl(tmp_path / "gate" / "generations.jsonl"),
        read_jsonl(tmp_path / "nogate" / "generations.jsonl"),
    )
    assert len(gated) == len(plain) == 6 and all(r["paraphrase"] == fixed for r in gated + plain)
    assert all(r["verdict"] == "pass" and r["similarity"] is None for r in plain)
    for r in gated:
        assert r["screener_score"] < 0.5 and r["similarity"] == 0.0 and r["verdict"] == "fail"
    assert json.loads((tmp_path / "gate" / "final" / "rewriter.json").read_text())["screener_min_similarity"] == 0.5


def test_split_sentences_trains_on_the_flagged_sentences_only(tiny_lm_dir, tmp_path):
    from detoxkit.sro.data import sentences

    assert sentences("Fuck You \n\nYou are a total idiot. Thanks for the edit, see the talk page!") == [
        "You are a total idiot.",
        "Thanks for the edit, see the talk page!",
    ]  # the 2-word header is dropped
    data = tmp_path / "comments.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": t}) + "\n"
            for t in [
                "Hello there. You are a stupid idiot and a fool.",
                "Nice work on this article today. Go away you stupid troll now.",
            ]
        )
    )
    flags_stupid = lambda texts: [float("stupid" in t) for t in texts]  # noqa: E731
    out = tmp_path / "sent"
    m = train(_cfg(tiny_lm_dir, data, out, max_steps=2, split_sentences=True), screener=flags_stupid)
    inputs = {r["input"] for r in read_jsonl(out / "generations.jsonl")}
    assert inputs == {"You are a stupid idiot and a fool.", "Go away you stupid troll now."}
    assert m["data"]["toxic_sentences"] == 2 and m["data"]["sentences_screened"] == 3
    with pytest.raises(DetoxkitError, match="split_sentences"):
        train(_cfg(tiny_lm_dir, data, tmp_path / "sft", loss_type="sft", split_sentences=True))


def test_training_inputs_that_duplicate_heldout_paradetox_are_dropped(tiny_lm_dir, tmp_path):
    """A Jigsaw-side sentence that is a held-out ParaDetox input (up to case and punctuation, or close in
    embedding space) never reaches training; the counts land in the run's data report."""
    from detoxkit.lm.load import load_tokenizer
    from detoxkit.sro.data import paradetox_split, training_rows

    _, validation, test = paradetox_split()
    leaked_exact = test[0]["text"].upper().rstrip(".!?") + " !!"
    leaked_near = validation[0]["text"]
    data = tmp_path / "comments.jsonl"
    texts = [leaked_exact, leaked_near + " extra", "you are a stupid troll and everyone here knows it"]
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))

    class Embedder:  # a stand-in: the near copy and its source share a direction; training and held-out texts differ
        def encode(self, xs):
            axis = [0 if leaked_near in x else 1 if x in texts else 2 for x in xs]
            return torch.eye(3)[axis]

    tok = load_tokenizer(str(tiny_lm_dir))
    exact_only = training_rows(str(data), "text", None, tok, 512, 0, 0)
    assert [r["text"] for r in exact_only[0]] == texts[1:]
    assert exact_only[1]["heldout_overlap"]["exact"] == 1
    rows, report = training_rows(str(data), "text", None, tok, 512, 0, 0, leak_threshold=0.9, embedder=Embedder())
    assert [r["text"] for r in rows] == texts[2:]
    assert report["heldout_overlap"]["removed"] == 2 and report["heldout_overlap"]["near"] == 1


def test_in_training_eval_reads_validation_not_test(tiny_lm_dir, toxic_file, tmp_path):
    from detoxkit.sro.data import paradetox_split
    from detoxkit.sro.train import SroTrainer

    _, validation, test = paradetox_split()
    trainer = SroTrainer(
        _cfg(tiny_lm_dir, toxic_file, tmp_path / "run", eval_steps=2, eval_size=5),
        screener=lambda t: [0.0] * len(t),
        evaluator=lambda x, y, refs: {},
    )
    assert trainer.eval_rows == validation[:5]
    assert not {r["text"] for r in trainer.eval_rows} & {r["text"] for r in test}


@pytest.mark.parametrize(
    "prompts",
    [[[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]], [[5, 6, 7, 8, 9, 10], [5, 6, 7, 11, 12], [5, 6, 7, 8, 13, 14, 15]]],
    ids=["no-shared-prefix", "shared-prefix"],
)
def test_completion_logps_equals_one_row_at_a_time(prompts):
    """Left-padded prompts, right-padded completions, logits for the completion columns only and a shared prompt
    start run once as a cache give each row's unpadded log-likelihood, and the same gradient."""
    from tiny import tiny_causal_lm

    from detoxkit.core.logprobs import sequence_logprobs

    model, tok = tiny_causal_lm(seed=0)
    completions = [[20, 21], [22, 23, 24, 25], [26]]
    got = completion_logps(model, prompts, completions, tok.pad_token_id)
    got.sum().backward()
    batched_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids = torch.tensor([p + c])
        want = sequence_logprobs(model(input_ids=ids).logits, ids, torch.tensor([[0] * len(p) + [1] * len(c)]))
        assert got[i].item() == pytest.approx(want.item(), abs=1e-4)
        want.sum().backward()
    for batched, one_by_one in zip(batched_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        assert completion_logps(model, prompts, completions, tok.pad_token_id, average=True)[1].item() == pytest.approx(
            got[1].item() / 4, abs=1e-5
        )


def test_fail_branch_lowers_paraphrase_logprob(tiny_lm):
    from accelerate import Accelerator
    from tiny import tiny_causal_lm

    from detoxkit.lm.generate import generate_ids
    from detoxkit.sro.rewrite import prompt_ids

    model, tok = tiny_causal_lm(seed=0)
    ref, _ = tiny_causal_lm(tokenizer=tok, seed=0)
    prompts = prompt_ids(tok, TOXIC[:2])
    ys = generate_ids(model, tok, prompts, max_new_tokens=6)
    xs = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in TOXIC[:2]]
    pad = tok.pad_token_id
    with torch.no_grad():
        ref_y, ref_x = completion_logps(ref, prompts, ys, pad), completion_logps(ref, prompts, xs, pad)
        before = completion_logps(model, prompts, ys, pad)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    failed = torch.tensor([False, False])

    def loss_fn():
        both = completion_logps(model, prompts + prompts, ys + xs, pad)
        return screened_loss("sro", both[:2], ref_y, both[2:], ref_x, failed, 0.1, 0.1)

    policy_step(model, opt, Accelerator(), loss_fn, 1.0, 1e-2)
    with torch.no_grad():
        after = completion_logps(model, prompts, ys, pad)
    assert (after < before).all()


def test_sro_train_logs_changes_weights_and_saves_rewriter(tiny_lm_dir, toxic_file, tmp_path):
    out = tmp_path / "run"
    m = train(_cfg(tiny_lm_dir, toxic_file, out, max_steps=3, save_steps=0), screener=even_length_screener)
    rows = read_jsonl(out / "generations.jsonl")
    assert len(rows) == 9 and {r["step"] for r in rows} == {0, 1, 2}
    assert {"input", "paraphrase", "verdict", "loss", "screener_score", "flipped"} <= set(rows[0])
    for r in rows:  # verdicts follow the screener (no noise); an empty paraphrase never passes
        assert (r["verdict"] == "pass") == (bool(r["paraphrase"]) and len(r["paraphrase"]) % 2 == 0)
    assert m["pass_rate_overall"] == pytest.approx(sum(r["verdict"] == "pass" for r in rows) / 9)
    assert [h["step"] for h in m["history"]] == [1, 2, 3]
    from safetensors.torch import load_file

    before = load_file(str(tiny_lm_dir / "model.safetensors"))
    after = _final_params(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert json.loads((out / "final" / "rewriter.json").read_text())["loss_type"] == "sro"
    assert (out / "checkpoint-3" / "trainer_state.json").exists()
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert len(state["ref_input_logps"]) == len({r["index"] for r in rows})  # one cached ref log-prob per input

    from detoxkit.sro import Rewriter

    rw = Rewriter.from_pretrained(str(out / "final"))
    assert rw.max_new_tokens == 6
    outs = rw.rewrite(["you idiot", "shut up"])
    assert len(outs) == 2 and all(isinstance(o, str) for o in outs)
    assert isinstance(rw.rewrite("you idiot"), str)


def test_resumed_run_equals_uninterrupted(tiny_lm_dir, toxic_file, tmp_path):
    full = tmp_path / "full"
    train(_cfg(tiny_lm_dir, toxic_file, full, feedback_noise=0.3), screener=even_length_screener)
    part = tmp_path / "part"
    train(_cfg(tiny_lm_dir, toxic_file, part, max_steps=2, feedback_noise=0.3), screener=even_length_screener)
    train(
        _cfg(tiny_lm_dir, toxic_file, part, feedback_noise=0.3, resume_from_checkpoint="latest"),
        screener=even_length_screener,
    )
    a, b = _final_params(full), _final_params(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items()} for r in rows]  # noqa: E731
    assert strip(read_jsonl(full / "generations.jsonl")) == strip(read_jsonl(part / "generations.jsonl"))


def test_pick_candidate_prefers_the_most_similar_passing_paraphrase():
    assert pick_candidate([False, True, True], [0.9, 0.6, 0.7]) == 2
    assert pick_candidate([False, True, True], None) == 1
    assert pick_candidate([False, False], [0.9, 0.1]) == 0


def test_num_generations_screens_every_sample_and_resumes(tiny_lm_dir, toxic_file, tmp_path):
    """k sampled paraphrases per input: the loss takes a passing one whenever any passes, and a resumed run samples
    what the uninterrupted one did (sampling is seeded by step)."""
    kw = dict(num_generations=4, temperature=1.5)
    full, part = tmp_path / "full", tmp_path / "part"
    train(_cfg(tiny_lm_dir, toxic_file, full, **kw), screener=even_length_screener)
    train(_cfg(tiny_lm_dir, toxic_file, part, max_steps=2, **kw), screener=even_length_screener)
    train(_cfg(tiny_lm_dir, toxic_file, part, resume_from_checkpoint="latest", **kw), screener=even_length_screener)
    rows = read_jsonl(full / "generations.jsonl")
    assert rows == read_jsonl(part / "generations.jsonl")
    a, b = _final_params(full), _final_params(part)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(rows) == 12 and all(0 <= r["candidates_passed"] <= 4 for r in rows)
    for r in rows:
        assert (r["verdict"] == "pass") == (r["candidates_passed"] > 0)
        assert (r["verdict"] == "pass") == (bool(r["paraphrase"]) and len(r["paraphrase"]) % 2 == 0)
    assert len({r["paraphrase"] for r in rows}) > 1  # sampled, not one greedy answer
    with pytest.raises(DetoxkitError, match="temperature"):
        train(
            _cfg(tiny_lm_dir, toxic_file, tmp_path / "bad", num_generations=2, temperature=0.0),
            screener=even_length_screener,
        )


def test_generate_ids_with_a_shared_prompt_start_equals_one_at_a_time():
    from tiny import tiny_causal_lm

    from detoxkit.lm.generate import generate_ids
    from detoxkit.sro.rewrite import prompt_ids

    model, tok = tiny_causal_lm(seed=1)
    torch.manual_seed(0)
    with torch.no_grad():  # wide random weights, so that each row's greedy output depends on its own tokens
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.5)
    prompts = prompt_ids(tok, TOXIC[:4])  # the template and few-shot turns are a long shared start
    batched = generate_ids(model, tok, prompts, max_new_tokens=8, batch_size=4)
    assert len({tuple(b) for b in batched}) == 4
    assert batched == [generate_ids(model, tok, [p], max_new_tokens=8)[0] for p in prompts]


def test_fail_weight_zero_is_dpo_pass_only_and_scales_the_fail_branch(tiny_lm_dir, toxic_file, tmp_path):
    runs = {
        name: _cfg(tiny_lm_dir, toxic_file, tmp_path / name, max_steps=2, **kw)
        for name, kw in [
            ("zero", dict(fail_weight=0.0)),
            ("pass_only", dict(loss_type="dpo_pass_only")),
            ("half", dict(fail_weight=0.5)),
        ]
    }
    for cfg in runs.values():
        train(cfg, screener=even_length_screener)
    a, b, c = (_final_params(tmp_path / n) for n in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the fail branch was used at 0.5
    fails = [r for r in read_jsonl(tmp_path / "half" / "generations.jsonl") if r["verdict"] == "fail"]
    assert fails and all(r["loss"] == pytest.approx(0.5 * math.log(2), abs=1e-4) for r in fails if r["step"] == 0)
    with pytest.raises(DetoxkitError, match="fail_weight"):
        train(_cfg(tiny_lm_dir, toxic_file, tmp_path / "bad", fail_weight=-1.0), screener=even_length_screener)


def test_rpo_alpha_adds_the_nll_of_passing_paraphrases(tiny_lm_dir, toxic_file, tmp_path, monkeypatch):
    """At step 0 the policy is the initial model, so each passing row's loss grows by exactly α × the mean token NLL
    of its paraphrase under that model; a failing row's loss is unchanged."""
    import detoxkit.sro.rewrite as rewrite
    from detoxkit.lm.generate import generate_ids
    from detoxkit.lm.load import load_model_and_tokenizer
    from detoxkit.sro.rewrite import prompt_ids

    monkeypatch.setattr(rewrite, "decode", lambda tok, ids: "thanks")  # the tiny model's text is often empty

    def first_step(screener, alpha):
        out = tmp_path / f"{screener.__name__}-{alpha}"
        train(_cfg(tiny_lm_dir, toxic_file, out, max_steps=1, save_steps=0, rpo_alpha=alpha), screener=screener)
        return read_jsonl(out / "generations.jsonl")

    model, tok = load_model_and_tokenizer(str(tiny_lm_dir))
    plain, rpo = first_step(pass_all, 0.0), first_step(pass_all, 2.0)
    prompts = prompt_ids(tok, [r["input"] for r in plain])
    ys = generate_ids(model, tok, prompts, max_new_tokens=6)  # what step 0 generated (greedy, same weights)
    with torch.no_grad():
        nll = -completion_logps(model, prompts, ys, tok.pad_token_id, average=True)
    for a, b, n in zip(plain, rpo, nll.tolist()):
        assert a["verdict"] == b["verdict"] == "pass" and n > 0
        assert b["loss"] - a["loss"] == pytest.approx(2.0 * n, rel=1e-4)
    for a, b in zip(first_step(fail_all, 0.0), first_step(fail_all, 2.0)):
        assert a["verdict"] == "fail" and b["loss"] == pytest.approx(a["loss"], abs=1e-7)


def test_fail_all_screener_and_full_noise_flip_every_verdict(tiny_lm_dir, toxic_file, tmp_path):
    out = tmp_path / "noisy"
    train(
        _cfg(tiny_lm_dir, toxic_file, out, max_steps=1, feedback_noise=1.0, loss_type="dpo_pass_only"),
        screener=fail_all,
    )
    rows = read_jsonl(out / "generations.jsonl")
    assert all(r["flipped"] and r["verdict"] == "pass" for r in rows if r["paraphrase"])


def test_lora_kto_and_npo_run(tiny_lm_dir, toxic_file, tmp_path):
    for loss_type in ("kto", "npo"):
        m = train(
            _cfg(
                tiny_lm_dir,
                toxic_file,
                tmp_path / loss_type,
                max_steps=1,
                use_peft=True,
                lora_r=4,
                lora_target_modules="q_proj,v_proj",
                loss_type=loss_type,
            ),
            screener=even_length_screener,
        )
        assert m["steps"] == 1
        assert (tmp_path / loss_type / "final" / "config.json").exists()  # the adapter was merged into a plain model


def test_sft_loss_falls(tiny_lm_dir, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"text": t, "references": ["please be kind"]}) + "\n" for t in TOXIC[:3]))
    out = tmp_path / "sft"
    m = train(_cfg(tiny_lm_dir, data, out, loss_type="sft", max_steps=6, learning_rate=5e-3))
    losses = [h["loss"] for h in m["history"]]
    assert losses[-1] < losses[0]
    assert read_jsonl(out / "generations.jsonl")[0]["target"] == "please be kind"


def test_bad_inputs_give_clear_errors(tiny_lm_dir, toxic_file, tmp_path):
    with pytest.raises(DetoxkitError, match="feedback_noise"):
        train(_cfg(tiny_lm_dir, toxic_file, tmp_path / "a", feedback_noise=1.5), screener=fail_all)
    with pytest.raises(DetoxkitError, match="screener_min_similarity"):
        train(_cfg(tiny_lm_dir, toxic_file, tmp_path / "a2", screener_min_similarity=2.0), screener=fail_all)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"comment": "x"}) + "\n")
    with pytest.raises(DetoxkitError, match="text"):
        train(_cfg(tiny_lm_dir, bad, tmp_path / "b"), screener=fail_all)
    with pytest.raises(DetoxkitError, match="screener"):
        train(_cfg(tiny_lm_dir, toxic_file, tmp_path / "c", screener="nope"))
    from detoxkit.config import parse_named

    with pytest.raises(DetoxkitError, match="--methods: 'just-a-name' is not NAME=SOURCE"):
        parse_named(["just-a-name"], "methods", "SOURCE: a rewriter folder, a model, or human")


def test_cli_rewrite_and_help(tiny_lm_dir, capsys):
    from detoxkit.cli import main

    assert main(["rewrite", "--model", str(tiny_lm_dir), "--max_new_tokens", "4", "you idiot", "shut up"]) == 0
    assert capsys.readouterr().out.count("\n") == 2  # one line per text (a random tiny model may say nothing)
    assert main(["sro", "--help"]) == 0
    assert main(["rewrite"]) == 2  # nothing to rewrite: a one-line error


def test_eval_table_on_heldout_split(tiny_lm_dir, tiny_embedder_dir, tmp_path):
    """The eval harness end to end with stand-in scorers (the real ones are exercised by benchmarks/sro.py)."""
    from detoxkit.data import load_builtin
    from detoxkit.eval.detox import detox_metrics
    from detoxkit.lm.embedder import load_embedder
    from detoxkit.sro.data import heldout_pool, paradetox_split
    from detoxkit.sro.evaluate import evaluate

    train_rows, validation_rows, test_rows = paradetox_split(size=670, seed=0)
    assert len(test_rows) == 670
    rows = load_builtin("paradetox")
    pool = heldout_pool(len(rows))
    assert len(train_rows) == len(rows) - len(pool)  # training keeps nothing of the held-out pool
    assert len(validation_rows) == len(pool) - 670  # the rest of the pool validates
    pool_texts = {rows[i]["text"] for i in pool}
    assert all(r["text"] in pool_texts for r in test_rows + validation_rows)
    assert not {r["text"] for r in validation_rows} & {r["text"] for r in test_rows}
    assert paradetox_split(size=670, seed=0)[2] == test_rows  # fixed by the seed

    embedder = load_embedder(str(tiny_embedder_dir))

    def evaluator(x, y, refs):
        return detox_metrics(x, y, lambda t: [0.0] * len(t), embedder, lambda t: [1.0] * len(t), refs)

    cfg = SroEvalConfig(
        methods=["human=human", f"tiny={tiny_lm_dir}"],
        max_eval_samples=4,
        max_new_tokens=4,
        output_dir=str(tmp_path / "eval"),
    )
    report = evaluate(cfg, evaluator=evaluator)
    assert set(report["methods"]) == {"human", "tiny"} and report["split"]["scored"] == 4
    assert report["methods"]["human"]["STA"]["value"] == 1.0
    assert "BLEU" in report["methods"]["tiny"]
    table = (tmp_path / "eval" / "table.md").read_text()
    assert "| human | 4 |" in table and "subset" in table
    assert len(read_jsonl(tmp_path / "eval" / "outputs.jsonl")) == 8
