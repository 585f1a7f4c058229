import math

import torch

from detoxkit.core.logprobs import sequence_logprobs, token_logprobs
from detoxkit.lm.score import score_continuations


def test_token_logprobs_are_shifted_by_hand():
    # Vocabulary of 2; position t's logits predict token t+1.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]]])  # p(0)=.5, p(0)=.75, unused
    ids = torch.tensor([[1, 0, 1]])
    lp = token_logprobs(logits, ids)
    assert torch.allclose(lp, torch.tensor([[math.log(0.5), math.log(0.25)]]))


def test_sequence_logprobs_masks_prompt_and_padding():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]]])
    ids = torch.tensor([[1, 0, 1]])
    mask = torch.tensor([[0, 0, 1]])  # only the last token is the completion
    assert torch.allclose(sequence_logprobs(logits, ids, mask), torch.tensor([math.log(0.25)]))
    assert torch.allclose(
        sequence_logprobs(logits, ids, torch.tensor([[0, 1, 1]]), average=True),
        torch.tensor([(math.log(0.5) + math.log(0.25)) / 2]),
    )


def test_score_continuations_matches_unbatched(tiny_lm):
    model, tok = tiny_lm
    ctx = ["Question: a?\nAnswer:", "Q"]
    cont = [" yes it is", " no"]
    batched, ns = score_continuations(model, tok, ctx, cont, batch_size=2)
    single = [score_continuations(model, tok, [c], [x], batch_size=1)[0][0] for c, x in zip(ctx, cont)]
    assert ns == [len(tok.encode(x, add_special_tokens=False)) for x in cont]
    assert all(abs(a - b) < 1e-4 for a, b in zip(batched, single))


def test_an_empty_context_without_bos_counts_only_scored_tokens(tiny_lm):
    """Without a BOS token nothing predicts a text's first token: it is context, and n counts the others (a count
    that included it made the per-token NLL of perplexity too small)."""
    import copy

    model, tok = tiny_lm
    no_bos = copy.deepcopy(tok)
    no_bos.bos_token = None
    ids = no_bos.encode("hello there world", add_special_tokens=False)
    (lp,), (n,) = score_continuations(model, no_bos, [""], ["hello there world"])
    want = token_logprobs(model(input_ids=torch.tensor([ids])).logits, torch.tensor([ids])).sum().item()
    assert n == len(ids) - 1 and abs(lp - want) < 1e-4
