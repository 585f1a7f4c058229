"""Trained weights kept as LoRA adapters: the low-rank difference from the base model, stored the PEFT way.

A bundle keeps each trained piece (a LoRA judge, a LoRA or fully fine-tuned rewriter) as a PEFT adapter folder
(``adapter_config.json`` + ``adapter_model.safetensors``) that ``PeftModel.from_pretrained(base, folder)`` loads. The
adapter holds, for every changed linear layer, the best rank-r approximation of the weight difference ΔW (truncated
SVD: Eckart-Young), stored in fp16: exact for a LoRA of rank <= r, an approximation otherwise. Why factorise rather
than train at the small rank: the pieces keep the recipes they were measured with (a rank-16 LoRA judge, a full
fine-tune rewriter; the same rewriter recipe trained as a rank-6 LoRA scored lower), and the build measures what the
truncation costs. What is not a linear layer's weight (a full fine-tune's embeddings and norms) is left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."  # PEFT's names for the wrapped model's modules


def low_rank(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A) with B @ A the best rank-`rank` approximation of `delta` (out x in) in Frobenius norm; the singular
    values are split evenly (B = U sqrt(S), A = sqrt(S) Vh) so both factors stay in fp16's range."""
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    return u[:, :r] * root, root[:, None] * vh[:r]


def weight_deltas(base, tuned) -> dict[str, torch.Tensor]:
    """{module name: W_tuned - W_base} for every linear layer whose weight changed (lm_head excluded: tied to the
    embeddings in small models, and PEFT's all-linear leaves it out too)."""
    base_mods = dict(base.named_modules())
    out = {}
    for name, module in tuned.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head" and name in base_mods:
            delta = module.weight.detach().float() - base_mods[name].weight.detach().float()
            if delta.abs().max() > 0:
                out[name] = delta
    return out


def lora_deltas(peft_model, adapter: str = "default") -> dict[str, torch.Tensor]:
    """{module name (as in the base model): ΔW} of one LoRA adapter of a PEFT model (scaling included)."""
    out = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "get_delta_weight") and adapter in getattr(module, "lora_A", {}):
            out[name.removeprefix(PREFIX)] = module.get_delta_weight(adapter).detach().float()
    return out


def save_adapter(path: str | Path, deltas: dict[str, torch.Tensor], rank: int, base_model: str) -> dict:
    """Write `deltas` as a rank-`rank` PEFT LoRA adapter (alpha = rank, so scaling 1; fp16) into the folder `path`;
    returns {rank, modules, parameters, relative_error}: ||ΔW - BA||_F / ||ΔW||_F over all layers."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors, err, norm = {}, 0.0, 0.0
    for name, delta in deltas.items():
        b, a = low_rank(delta, rank)
        b16, a16 = b.half().contiguous(), a.half().contiguous()
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a16
        tensors[f"{PREFIX}{name}.lora_B.weight"] = b16
        err += float(((b16.float() @ a16.float()) - delta).pow(2).sum())
        norm += float(delta.pow(2).sum())
    targets = sorted({name.rsplit(".", 1)[-1] for name in deltas})
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM")
    config.base_model_name_or_path = base_model
    config.save_pretrained(str(path))
    save_file(tensors, str(path / WEIGHTS_FILE))
    return {
        "rank": rank,
        "modules": len(deltas),
        "parameters": sum(t.numel() for t in tensors.values()),
        "relative_error": round((err / norm) ** 0.5, 4) if norm else 0.0,
    }


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def check_adapter(path: str | Path) -> None:
    """Fail fast, before any model loads, on an adapter folder with a missing file, a config that is not JSON or
    weights whose safetensors header does not read (a truncated or corrupt file)."""
    from safetensors import SafetensorError, safe_open

    from ..errors import DataError

    path = Path(path)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise DataError(path / name, "missing: a LoRA adapter folder needs it")
    try:
        json.loads((path / CONFIG_FILE).read_text())
    except ValueError as e:
        raise DataError(path / CONFIG_FILE, f"not JSON: {e}") from None
    try:
        with safe_open(str(path / WEIGHTS_FILE), "pt") as f:
            f.keys()
    except (OSError, SafetensorError) as e:
        raise DataError(path / WEIGHTS_FILE, f"not a loadable LoRA adapter: {e}".split("\n")[0]) from None


def merged(base, path: str | Path):
    """`base` with the PEFT adapter folder `path` added into its weights (no adapter layers left at inference)."""
    from peft import PeftModel

    from ..errors import DataError

    path = Path(path)
    check_adapter(path)
    try:
        model = PeftModel.from_pretrained(base, str(path))
    except (OSError, ValueError, RuntimeError, KeyError) as e:  # weights that do not fit this model
        raise DataError(path / WEIGHTS_FILE, f"not a LoRA adapter for this model: {e}".split("\n")[0]) from None
    return model.merge_and_unload().eval()
