import math

import torch

from detoxkit.core.logprobs import answer_share, sequence_logprobs, token_logprobs
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


def test_answer_share_sums_token_ids_and_keeps_confident_scores_apart():
    # Vocabulary of 4: tokens 0 and 1 are both "yes", 2 is "no". Row 0: p(yes) = 2/3 of p(yes) + p(no).
    row0 = [0.0, 0.0, 0.0, 5.0]
    # Rows 1, 2: log-odds 20 and 25, which a float32 sigmoid rounds to exactly 1.0 (a tie at the top).
    row1, row2 = [20.0, -1e4, 0.0, 0.0], [25.0, -1e4, 0.0, 0.0]
    share = answer_share(torch.tensor([row0, row1, row2]), [0, 1], [2])
    assert share.dtype == torch.float64
    assert math.isclose(share[0], 2 / 3, rel_tol=1e-6)
    # What separates them is 1 - share = sigmoid(-log-odds), which float32 loses and float64 keeps.
    assert math.isclose(1 - share[1], 1 / (1 + math.exp(20)), rel_tol=1e-4)
    assert math.isclose(1 - share[2], 1 / (1 + math.exp(25)), rel_tol=1e-4)


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
