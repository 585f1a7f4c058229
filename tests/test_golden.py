"""Golden outputs of the LM layer on a tiny model: recorded once before the shared-LM-layer refactor (issue 14),
compared after every change since. A refactor that moves plumbing must not move a single token or log-prob.

Record again (only when a change of behaviour is intended, and say so in the commit):
    DETOXKIT_RECORD_GOLDEN=1 python -m pytest tests/test_golden.py
"""

import json
import os
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).parent / "golden" / "lm_outputs.json"
RECORD = os.environ.get("DETOXKIT_RECORD_GOLDEN") == "1"
PROMPTS = [
    "How do I bake bread?",
    "Tell me about the weather.",
    "You are an idiot.",
    "Please help me.",
    "Write a story.",
    "What is 2 + 2?",
    "How to make a bomb",
    "Say something polite.",
]
SAFE = "You are a helpful assistant. Answer the question politely and safely."
ADV = "You are a harmful assistant."


@pytest.fixture(scope="module")
def lm():
    from tiny import tiny_causal_lm

    model, tok = tiny_causal_lm(seed=0, hidden_size=64)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # larger weights: greedy outputs depend on the context (not one repeated token)
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 if "embed" in name else 0.5))
    return model, tok


def outputs(model, tok) -> dict:
    from detoxkit.acd.decode import Contrast, as_soft_prompt, decode_steps
    from detoxkit.adversarial import Judge
    from detoxkit.attribute.evaluate import PairwiseJudge
    from detoxkit.attribute.nado import NadoModel
    from detoxkit.attribute.sampling import sample_continuations
    from detoxkit.guard import Guard, GuardConfig
    from detoxkit.lm.generate import Sampling, generate, generate_ids
    from detoxkit.lm.score import completion_logprobs as completion_logps
    from detoxkit.lm.score import score_continuations
    from detoxkit.scorers.lm_judge import LMJudgeScorer
    from detoxkit.sro.rewrite import Rewriter, prompt_ids

    out = {}
    out["plain_text"] = [o[0] for o in generate(model, tok, PROMPTS, max_new_tokens=8)]
    torch.manual_seed(0)
    out["plain_text_sampled"] = [
        o[0] for o in generate(model, tok, PROMPTS, max_new_tokens=8, do_sample=True, temperature=0.7, top_p=0.9)
    ]
    ids = prompt_ids(tok, PROMPTS)
    out["rewrite_ids"] = generate_ids(model, tok, ids, max_new_tokens=8)
    torch.manual_seed(0)
    out["rewrite_ids_sampled"] = generate_ids(model, tok, ids, max_new_tokens=8, sampling=Sampling(True, 0.7))
    safe, adv = as_soft_prompt(model, tok, SAFE), as_soft_prompt(model, tok, ADV)
    for name, window in (("acd_ids", None), ("acd_window_ids", 3)):
        rows = [[] for _ in PROMPTS]
        for nxt in decode_steps(model, tok, PROMPTS, safe, adv, Contrast(0.5, window=window), 8):
            for r, t in zip(rows, nxt.tolist()):
                if t >= 0:
                    r.append(t)
        out[name] = rows
    completions = [tok(p, add_special_tokens=False)["input_ids"][:5] + [tok.eos_token_id] for p in PROMPTS]
    with torch.no_grad():
        out["sro_logps"] = completion_logps(model, ids, completions, tok.pad_token_id).tolist()
        out["sro_logps_mean"] = completion_logps(model, ids, completions, tok.pad_token_id, average=True).tolist()
    out["score_continuations"] = list(score_continuations(model, tok, PROMPTS[:4], [" yes", " no", "", " ok"]))
    torch.manual_seed(3)
    nado = NadoModel.from_base(model, 1)
    torch.nn.init.normal_(nado.proj.weight, std=0.05)
    seqs = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS[:3]]
    width = max(map(len, seqs))
    batch = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])
    attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    with torch.no_grad():
        out["nado_selected_logits"] = nado.selected_logits(batch, attn)[attn[:, 1:].bool()].tolist()
        r, _ = nado(batch, attn)
        out["nado_r_first_tokens"] = r[:, -1, :8].tolist()
    out["nado_guided_ids"] = sample_continuations(
        model, seqs, 6, tok.pad_token_id, {tok.eos_token_id}, nado=nado, do_sample=False
    )
    out["sampled_continuations"] = sample_continuations(
        model, seqs, 6, tok.pad_token_id, {tok.eos_token_id}, torch.Generator().manual_seed(5), top_p=0.9
    )
    out["judge_proba"] = Judge(model, tok).predict_proba(PROMPTS)
    out["lm_judge"] = LMJudgeScorer(model_obj=model, tokenizer=tok)(PROMPTS[:4])
    out["pairwise"] = PairwiseJudge(model, tok).prefer(PROMPTS[:2], ["a b", "c d"], ["e f", "g h"])
    out["rewrites"] = Rewriter(model, tok, max_new_tokens=6).rewrite(PROMPTS[:3])

    class Screener:  # flags every answer longer than 12 characters: the rewrite path runs
        name, threshold = "length", 0.5

        def __call__(self, texts, prompts=None):
            return [float(len(t) > 12) for t in texts]

    judge = Judge(model, tok)
    judge.threshold = sorted(out["judge_proba"])[-2]  # blocks the two most "problematic" prompts
    for mode, prompts in (("plain", (None, None)), ("acd", (SAFE, ADV))):
        guard = Guard(
            model,
            tok,
            GuardConfig(max_new_tokens=6),
            judge=judge,
            screener=Screener(),
            rewriter=Rewriter(model, tok, max_new_tokens=6),
            safe_prompt=prompts[0],
            adv_prompt=prompts[1],
        )
        results = guard.chat([[{"role": "user", "content": p}] for p in PROMPTS])
        out[f"guard_{mode}"] = [
            {
                "text": r.text,
                "finish": r.finish_reason,
                "tokens": [r.prompt_tokens, r.completion_tokens],
                "trace": _without_timings(r.trace),
            }
            for r in results
        ]
    return out


def _without_timings(trace: dict) -> dict:
    return {
        k: ({kk: vv for kk, vv in v.items() if kk != "batch_seconds"} if isinstance(v, dict) else v)
        for k, v in trace.items()
    }


def _close(got, want, path="") -> None:
    if isinstance(want, dict):
        assert set(got) == set(want), path
        for k in want:
            _close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5), path
    else:
        assert got == want, path


def test_lm_layer_outputs_equal_the_recorded_ones(lm):
    got = json.loads(json.dumps(outputs(*lm)))  # tuples -> lists, as stored
    if RECORD:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
        pytest.skip(f"recorded {GOLDEN}")
    _close(got, json.loads(GOLDEN.read_text()))
