"""LoRA adapters from weight differences (lm.adapters): the factorisation, the PEFT folder, bad folders."""

from __future__ import annotations

import copy

import pytest
import torch


def test_low_rank_recovers_a_rank_two_matrix_and_truncates_to_the_top_singular_pair():
    from detoxkit.lm.adapters import low_rank

    u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    v = torch.tensor([[2.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 3.0]])
    delta = u @ v  # rank 2
    b, a = low_rank(delta, 2)
    assert b.shape == (3, 2) and a.shape == (2, 4)
    assert torch.allclose(b @ a, delta, atol=1e-5)
    # diag(3, 1): the best rank-1 approximation keeps the 3 and drops the 1 (Eckart-Young), split as sqrt(3) each
    b1, a1 = low_rank(torch.diag(torch.tensor([3.0, 1.0])), 1)
    assert torch.allclose((b1 @ a1).abs(), torch.tensor([[3.0, 0.0], [0.0, 0.0]]), atol=1e-6)
    assert torch.allclose(b1.abs().flatten(), torch.tensor([3.0**0.5, 0.0]), atol=1e-6)


def _perturbed(model, rank: int, seed: int = 0):
    """A copy of `model` whose q_proj and down_proj weights moved by a random rank-`rank` matrix."""
    g = torch.Generator().manual_seed(seed)
    tuned = copy.deepcopy(model)
    for name, module in tuned.named_modules():
        if name.endswith(("q_proj", "down_proj")):
            out_f, in_f = module.weight.shape
            module.weight.data += 0.05 * torch.randn(out_f, rank, generator=g) @ torch.randn(rank, in_f, generator=g)
    return tuned


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_a_full_fine_tune_saved_as_an_adapter_loads_with_peft_and_gives_the_tuned_model(tiny_lm, tmp_path):
    from peft import PeftModel

    from detoxkit.lm.adapters import is_adapter, merged, save_adapter, weight_deltas

    model, _ = tiny_lm
    tuned = _perturbed(model, rank=2)
    deltas = weight_deltas(model, tuned)
    assert {n.rsplit(".", 1)[-1] for n in deltas} == {"q_proj", "down_proj"}
    stats = save_adapter(tmp_path / "a", deltas, rank=2, base_model="tiny")
    assert is_adapter(tmp_path / "a") and stats["relative_error"] < 1e-2  # fp16 storage only
    ids = torch.tensor([[5, 9, 17, 3, 40]])
    want = _logits(tuned, ids)
    assert torch.allclose(_logits(merged(copy.deepcopy(model), tmp_path / "a"), ids), want, atol=1e-3)
    peft = PeftModel.from_pretrained(copy.deepcopy(model), str(tmp_path / "a"))  # the plain PEFT way
    assert torch.allclose(_logits(peft, ids), want, atol=1e-3)
    # a smaller rank loses the second direction: measurably worse, still closer than the base
    low = save_adapter(tmp_path / "b", deltas, rank=1, base_model="tiny")
    assert low["relative_error"] > 0.1 and low["parameters"] < stats["parameters"]


def test_a_lora_judge_adapter_is_saved_as_a_plain_peft_adapter_of_its_base(tiny_lm, tmp_path):
    from detoxkit.lm.adapters import lora_deltas, merged, save_adapter
    from detoxkit.training import apply_lora

    model, _ = tiny_lm
    peft = apply_lora(copy.deepcopy(model), r=8, alpha=16, target_modules="all-linear")
    g = torch.Generator().manual_seed(1)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            p.data = 0.1 * torch.randn(p.shape, generator=g)
    deltas = lora_deltas(peft)
    assert deltas and all(not n.startswith("base_model") for n in deltas)
    stats = save_adapter(tmp_path / "a", deltas, rank=8, base_model="tiny")
    ids = torch.tensor([[5, 9, 17, 3, 40]])
    assert stats["relative_error"] < 1e-2
    assert torch.allclose(_logits(merged(copy.deepcopy(model), tmp_path / "a"), ids), _logits(peft, ids), atol=1e-3)


def test_a_corrupt_or_incomplete_adapter_folder_is_a_clear_error_naming_the_file(tiny_lm, tmp_path):
    from detoxkit.errors import DataError
    from detoxkit.lm.adapters import WEIGHTS_FILE, merged, save_adapter, weight_deltas

    model, _ = tiny_lm
    save_adapter(tmp_path / "a", weight_deltas(model, _perturbed(model, 1)), rank=1, base_model="tiny")
    (tmp_path / "a" / WEIGHTS_FILE).write_bytes(b"\x00" * 40)
    with pytest.raises(DataError, match=f"a/{WEIGHTS_FILE}: not a loadable LoRA adapter"):
        merged(copy.deepcopy(model), tmp_path / "a")
    (tmp_path / "a" / WEIGHTS_FILE).unlink()
    with pytest.raises(DataError, match=f"{WEIGHTS_FILE}: missing"):
        merged(copy.deepcopy(model), tmp_path / "a")
