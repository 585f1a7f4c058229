"""Hand-computed cases for contrastive_logits and the OPO losses (unlikelihood, L_p + L_n + L_r)."""

import math

import pytest
import torch

from detoxkit.core.contrastive import contrastive_logits
from detoxkit.core.losses import nll_loss, opo_loss, unlikelihood_loss


def test_acd_form_is_safe_minus_alpha_adv():
    safe, adv = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 1.0, 0.0])
    assert torch.allclose(contrastive_logits(safe, adv, 0.5, "acd"), torch.tensor([-0.5, 1.5, 3.0]))


def test_cfg_form_keeps_safe_scale():
    safe, adv = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 1.0, 0.0])
    assert torch.allclose(contrastive_logits(safe, adv, 0.5, "cfg"), torch.tensor([0.0, 2.5, 4.5]))
    assert torch.equal(contrastive_logits(safe, adv, 0.0, "cfg"), safe)


def test_plausibility_masks_tokens_the_safe_branch_finds_implausible():
    safe = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    adv = torch.zeros(1, 3)
    out = contrastive_logits(safe, adv, 1.0, "acd", plausibility=0.4)  # keep p >= 0.24
    assert torch.isinf(out[0, 2]) and out[0, 2] < 0
    assert torch.allclose(out[0, :2], safe[0, :2])


def test_logits_and_logprobs_give_the_same_distribution():
    g = torch.Generator().manual_seed(0)
    s, a = torch.randn(2, 7, generator=g), torch.randn(2, 7, generator=g)
    p1 = contrastive_logits(s, a, 0.4).softmax(-1)
    p2 = contrastive_logits(s.log_softmax(-1), a.log_softmax(-1), 0.4).softmax(-1)
    assert torch.allclose(p1, p2, atol=1e-6)


def test_bad_form_is_an_error():
    with pytest.raises(ValueError, match="form"):
        contrastive_logits(torch.zeros(3), torch.zeros(3), 0.5, "nope")


def test_nll_is_mean_over_sequences_of_summed_tokens():
    logp = torch.tensor([[-1.0, -2.0], [-3.0, -4.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    assert nll_loss(logp, mask).item() == pytest.approx((3 + 3) / 2)


def test_unlikelihood_by_hand():
    logp = torch.log(torch.tensor([[0.5, 0.9]]))
    assert unlikelihood_loss(logp, torch.tensor([[1, 1]])).item() == pytest.approx(math.log(2) + math.log(10), rel=1e-5)
    assert unlikelihood_loss(logp, torch.tensor([[1, 0]])).item() == pytest.approx(math.log(2), rel=1e-5)


def test_unlikelihood_clamps_p_at_one_minus_1e6():
    out = unlikelihood_loss(torch.zeros(1, 1), torch.ones(1, 1))  # p = 1 exactly
    assert math.isfinite(out.item()) and out.item() == pytest.approx(-math.log(1e-6), rel=1e-3)
    x = torch.zeros(1, 1, requires_grad=True)
    unlikelihood_loss(x, torch.ones(1, 1)).backward()
    assert torch.isfinite(x.grad).all()


def test_opo_loss_sums_its_three_parts():
    pos = (torch.tensor([[-1.0, -1.0]]), torch.ones(1, 2))
    neg = (torch.log(torch.tensor([[0.5]])), torch.ones(1, 1))
    ret = (torch.tensor([[-0.5], [-1.5]]), torch.ones(2, 1))
    total, parts = opo_loss(pos, neg, ret)
    assert parts["L_p"] == pytest.approx(2.0)
    assert parts["L_n"] == pytest.approx(math.log(2), rel=1e-5)
    assert parts["L_r"] == pytest.approx(1.0)
    assert total.item() == pytest.approx(2.0 + math.log(2) + 1.0, rel=1e-5)
