"""Soft system prompts: spliced at the system slot, two prompts as rows, frozen model, safetensors round trip."""

import pytest
import torch

from detoxkit.errors import DetoxkitError
from detoxkit.lm.chat import render_chat
from detoxkit.lm.soft_prompt import SoftPrompt, assert_frozen, build_inputs, freeze, template_pieces

SAFE = "You are a helpful assistant. Answer the question politely and safely."
ADV = "You are an idiot and I hate you."


def test_system_slot_is_between_template_pieces(tiny_lm):
    _, tok = tiny_lm
    before, after = template_pieces(tok, "hi there")
    assert tok.decode(before) == "<|im_start|>system\n"
    assert tok.decode(after).startswith("<|im_end|>\n<|im_start|>user\nhi there")
    assert tok.decode(after).endswith("<|im_start|>assistant\n")


def test_text_initialised_prompts_reproduce_hard_system_prompts_batched(tiny_lm):
    """Two different prompts as two rows (left-padded) give each row's unpadded hard-prompt logits."""
    model, tok = tiny_lm
    prompts = ["Is the weather sunny today?", "Rewrite: shut up."]
    sps = [SoftPrompt.from_text(model, tok, SAFE), SoftPrompt.from_text(model, tok, ADV)]
    assert sps[0].n_tokens != sps[1].n_tokens
    b = build_inputs(model, tok, prompts, sps)
    with torch.no_grad():
        got = model(**b.model_inputs()).logits[:, -1]
        for i, (p, text) in enumerate(zip(prompts, [SAFE, ADV])):
            ids = tok(render_chat(tok, p, text), return_tensors="pt", add_special_tokens=False).input_ids
            assert torch.equal(
                b.input_ids[i, -ids.shape[1] :][b.attention_mask[i, -ids.shape[1] :] == 1][:3], ids[0, :3]
            )
            assert torch.allclose(got[i], model(input_ids=ids).logits[0, -1], atol=1e-5)


def test_completion_mask_marks_completion_and_eos(tiny_lm):
    model, tok = tiny_lm
    sp = SoftPrompt.from_text(model, tok, SAFE)
    b = build_inputs(model, tok, ["hi", "hello there"], [sp, sp], ["Sure.", "No"])
    for i, c in enumerate(["Sure.", "No"]):
        n = len(tok.encode(c, add_special_tokens=False)) + 1
        assert int(b.completion_mask[i].sum()) == n
        assert b.input_ids[i, -1].item() == tok.eos_token_id


def test_gradient_reaches_only_the_soft_prompt():
    from tiny import tiny_causal_lm

    model, tok = tiny_causal_lm(seed=1)  # its own model: freezing must not leak into the shared fixture
    freeze(model)
    sp = SoftPrompt.from_text(model, tok, SAFE)
    b = build_inputs(model, tok, ["hi"], [sp], ["Sure."])
    model(**b.model_inputs()).logits.sum().backward()
    assert sp.embeddings.grad is not None and sp.embeddings.grad.abs().sum() > 0
    assert_frozen(model)
    list(model.parameters())[0].requires_grad_(True)
    with pytest.raises(AssertionError, match="frozen"):
        assert_frozen(model)


def test_save_load_round_trip_with_metadata(tiny_lm, tmp_path):
    model, tok = tiny_lm
    sp = SoftPrompt.from_text(model, tok, SAFE, model_name="tiny")
    with torch.no_grad():
        sp.embeddings.add_(0.5)
    back = SoftPrompt.load(sp.save(tmp_path / "p.safetensors"))
    assert torch.equal(back.embeddings, sp.embeddings)
    assert (back.init_text, back.model_name, back.template) == (SAFE, "tiny", tok.chat_template)
    back.check_compatible(model, tok)


def test_bad_files_and_mismatches_are_clear_errors(tiny_lm, tmp_path):
    from safetensors.torch import save_file

    model, tok = tiny_lm
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(DetoxkitError, match="not a detoxkit soft prompt"):
        SoftPrompt.load(tmp_path / "other.safetensors")
    with pytest.raises(DetoxkitError, match="not found"):
        SoftPrompt.load(tmp_path / "missing.safetensors")
    with pytest.raises(DetoxkitError, match="width"):
        SoftPrompt(torch.zeros(3, 7)).check_compatible(model, tok)
    with pytest.raises(DetoxkitError, match=r"\(n, d\)"):
        SoftPrompt(torch.zeros(3))


def test_template_without_chat_template_is_an_error(tiny_lm):
    from tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    tok.chat_template = None
    with pytest.raises(DetoxkitError, match="chat template"):
        template_pieces(tok, "hi")
