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
