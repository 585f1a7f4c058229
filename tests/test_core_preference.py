import math

import pytest
import torch

from detoxkit.core.logprobs import sequence_logprobs
from detoxkit.core.preference import (
    dpo_loss,
    kto_loss,
    label_smoothed_sigmoid_loss,
    npo_loss,
    sro_loss,
)


def _sig(z):
    return 1 / (1 + math.exp(-z))


def test_dpo_loss_by_hand():
    # Δ(chosen) = -1 - (-2) = 1, Δ(rejected) = -3 - (-1) = -2, h = 0.1 * 3 = 0.3.
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -1.0))
    assert dpo_loss(pc, pr, rc, rr, beta=0.1).item() == pytest.approx(-math.log(_sig(0.3)), abs=1e-6)
    eps = 0.1
    want = -(1 - eps) * math.log(_sig(0.3)) - eps * math.log(_sig(-0.3))
    assert dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=eps).item() == pytest.approx(want, abs=1e-6)


def test_label_smoothing_rejects_out_of_range():
    with pytest.raises(ValueError, match="label_smoothing"):
        label_smoothed_sigmoid_loss(torch.zeros(1), 0.5)


def test_sro_loss_branches_by_hand():
    # Row 0 passes: h = β[(−4 − −5) − (−10 − −9)] = 0.1·2 = 0.2.  Row 1 fails: h = −β·(−2 − −4) = −0.2.
    pol_y = torch.tensor([-4.0, -2.0])
    ref_y = torch.tensor([-5.0, -4.0])
    pol_x = torch.tensor([-10.0, -7.0])
    ref_x = torch.tensor([-9.0, -1.0])  # the fail row's x must not matter
    passed = torch.tensor([True, False])
    eps = 0.1
    loss = sro_loss(pol_y, ref_y, pol_x, ref_x, passed, beta=0.1, label_smoothing=eps)
    want0 = -(1 - eps) * math.log(_sig(0.2)) - eps * math.log(_sig(-0.2))
    want1 = -(1 - eps) * math.log(_sig(-0.2)) - eps * math.log(_sig(0.2))
    assert loss.tolist() == pytest.approx([want0, want1], abs=1e-6)
    # fail_weight=0 is "DPO on passing pairs only".
    only_pass = sro_loss(pol_y, ref_y, pol_x, ref_x, passed, beta=0.1, label_smoothing=eps, fail_weight=0.0)
    assert only_pass.tolist() == pytest.approx([want0, 0.0], abs=1e-6)


def test_sro_fail_gradient_pushes_paraphrase_down():
    pol_y = torch.tensor([-3.0], requires_grad=True)
    sro_loss(
        pol_y, torch.tensor([-3.0]), torch.tensor([-1.0]), torch.tensor([-1.0]), torch.tensor([False])
    ).sum().backward()
    assert pol_y.grad.item() > 0  # gradient descent lowers log π(ŷ)


def test_npo_and_kto_by_hand():
    pol, ref = torch.tensor([-2.0, -1.0]), torch.tensor([-3.0, -3.0])  # Δ = 1, 2
    assert npo_loss(pol, ref, beta=0.5).tolist() == pytest.approx(
        [-(2 / 0.5) * math.log(_sig(-0.5)), -(2 / 0.5) * math.log(_sig(-1.0))], abs=1e-6
    )
    # z0 = mean Δ = 1.5; desirable row 0: 1 − σ(β(1 − 1.5)); undesirable row 1: 1 − σ(β(1.5 − 2)).
    got = kto_loss(pol, ref, torch.tensor([True, False]), beta=1.0)
    assert got.tolist() == pytest.approx([1 - _sig(-0.5), 1 - _sig(-0.5)], abs=1e-6)
    # A negative KL estimate is clamped at 0.
    got = kto_loss(pol, ref, torch.tensor([True, True]), beta=1.0, kl_estimate=torch.tensor(-5.0))
    assert got.tolist() == pytest.approx([1 - _sig(1.0), 1 - _sig(2.0)], abs=1e-6)


def test_pass_branch_equals_trl_dpo_trainer_loss(tmp_path):
    """SRO's pass branch, with the toxic input as the rejected response, is TRL 1.16's sigmoid DPO loss."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from tiny import tiny_causal_lm
    from trl import DPOConfig, DPOTrainer

    policy, tok = tiny_causal_lm(seed=0)
    ref, _ = tiny_causal_lm(tokenizer=tok, seed=1)  # a different reference, so the ratios are not all zero
    toxic = "shut up, you idiot"
    pair = {
        "prompt": [{"role": "user", "content": "Rewrite politely: " + toxic}],
        "chosen": [{"role": "assistant", "content": "please be quiet"}],
        "rejected": [{"role": "assistant", "content": toxic}],
    }
    args = DPOConfig(
        output_dir=str(tmp_path),
        beta=0.1,
        per_device_train_batch_size=1,
        report_to="none",
        use_cpu=True,
        loss_type=["sigmoid"],
    )
    trainer = DPOTrainer(
        model=policy, ref_model=ref, args=args, processing_class=tok, train_dataset=Dataset.from_list([pair])
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
        ids, attn, mask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        pol = sequence_logprobs(policy(input_ids=ids, attention_mask=attn).logits, ids, mask)
        rf = sequence_logprobs(ref(input_ids=ids, attention_mask=attn).logits, ids, mask)
    ours = sro_loss(pol[:1], rf[:1], pol[1:], rf[1:], torch.tensor([True]), beta=0.1, label_smoothing=0.0).item()
    assert abs(ours - math.log(2)) > 1e-4  # the check is not the trivial Δ = 0 case
    assert ours == pytest.approx(trl_loss, abs=1e-5)
