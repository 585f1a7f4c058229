import math

import pytest
import torch

from detoxkit.core.nado import guided_logprobs, nado_loss, token_kl


def test_constant_r_gives_q_equal_p_and_zero_kl():
    logits = torch.randn(2, 3, 11)
    for c in (-3.0, 0.0, 2.5):
        target = guided_logprobs(logits, torch.full_like(logits, c))
        assert torch.allclose(target, torch.log_softmax(logits, -1), atol=1e-6)
        assert torch.allclose(token_kl(target, logits), torch.zeros(2, 3), atol=1e-6)


def test_zero_r_gets_zero_mass_and_the_kl_stays_finite():
    logits = torch.randn(4, 7)
    r = torch.zeros(4, 7)
    r[:, [1, 5]] = float("-inf")  # R = σ(−inf) = 0: those tokens can never satisfy the constraint
    target = guided_logprobs(logits, r)
    q = target.exp()
    assert torch.all(q[:, [1, 5]] == 0)
    assert torch.allclose(q.sum(-1), torch.ones(4))
    kl = token_kl(target, logits)
    assert torch.isfinite(kl).all() and (kl > 0).all()


def test_hand_computed_projection_and_kl():
    # p = [1/3, 2/3]; R = [1, 1/2] -> q* ∝ [1/3, 1/3] = [1/2, 1/2]; KL(q*‖p) = ½ln(3/2) + ½ln(3/4) = ½ln(9/8).
    logits = torch.tensor([0.0, math.log(2.0)])
    r = torch.tensor([40.0, 0.0])  # σ(40) = 1 to float precision, σ(0) = 1/2
    target = guided_logprobs(logits, r)
    assert torch.allclose(target.exp(), torch.tensor([0.5, 0.5]), atol=1e-6)
    assert token_kl(target, logits).item() == pytest.approx(0.5 * math.log(9 / 8), abs=1e-6)
    # strength 2: q ∝ [1/3, 2/3 · 1/4] = [2/3, 1/3]
    assert torch.allclose(guided_logprobs(logits, r, strength=2.0).exp(), torch.tensor([2 / 3, 1 / 3]), atol=1e-6)


def test_kl_gradient_is_p_minus_q():
    logits = torch.randn(3, 9, requires_grad=True)
    target = guided_logprobs(logits.detach(), torch.randn(3, 9))
    token_kl(target, logits).sum().backward()
    assert torch.allclose(logits.grad, logits.detach().softmax(-1) - target.exp(), atol=1e-6)


def test_nado_loss_hand_case_and_mask():
    z = torch.tensor([[0.0, 2.0, 9.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([1.0, 0.0])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    expected = (math.log(2) + math.log1p(math.exp(-2.0)) + math.log(2)) / 3  # masked position ignored
    assert nado_loss(z, labels, mask).item() == pytest.approx(expected, abs=1e-6)


def test_predicted_probability_can_exceed_one_half():
    """The reference code's loss BCE(log σ(z), y) caps σ(log σ(z)) at 0.5: it cannot learn R > 0.5. Ours can."""
    z = torch.zeros(1, 4, requires_grad=True)
    opt = torch.optim.SGD([z], lr=1.0)
    for _ in range(50):
        opt.zero_grad()
        nado_loss(z, torch.ones(1), torch.ones(1, 4)).backward()
        opt.step()
    assert torch.sigmoid(z).min().item() > 0.9
