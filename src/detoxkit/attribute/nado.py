"""The NADO auxiliary model: a few transformer layers and a per-token head giving R(x, y_<t ⊕ v) for every v.

The trunk is the base model's own architecture cut to `num_layers` layers and initialised from its embeddings
and lowest layers (so it starts out reading text the way the base does). The head scores every candidate
token through the trunk's token embeddings E: r[v] = (W h + c) · E[v] + b[v]. The reference code uses a fresh
`hidden → vocab` matrix instead; trained on a few thousand samples, its rows only move for tokens that were
actually sampled, while the bilinear form learns one d×d map from every sample and carries what it learned
about a token to tokens with similar embeddings (a slur it has seen to one it has not). W and c start at zero
and b at logit(prior), so R starts as one constant for every token and q* = p exactly: guidance starts
neutral. One forward gives the logits for all next tokens at every position, so training and guided
decoding cost one pass of a small model. Saved as `config.json` (the trunk's) + `nado.json` + `model.safetensors`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from ..core.nado import guided_logprobs
from ..errors import DetoxkitError


class NadoModel(nn.Module):
    def __init__(self, config, prior: float = 0.5):
        from transformers import AutoModel

        super().__init__()
        # float32 whatever the base model's dtype: a small model trained from few samples with AdamW at 1e-3 (and the
        # guided log-probs are computed in float32 anyway).
        self.trunk = AutoModel.from_config(config, dtype=torch.float32)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size, bias=True)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.set_prior(prior)
        self.meta: dict = {}

    def set_prior(self, prior: float) -> None:
        """Reset the per-token bias to logit(prior): R = prior everywhere while W and c are still zero."""
        prior = min(max(prior, 1e-3), 1 - 1e-3)
        with torch.no_grad():
            self.bias.fill_(math.log(prior / (1 - prior)))

    @classmethod
    def from_base(cls, base_model, num_layers: int = 2, prior: float = 0.5) -> "NadoModel":
        """A NADO whose trunk copies the base model's embeddings, lowest `num_layers` layers and final norm."""
        config = base_model.config.__class__.from_dict(base_model.config.to_dict())
        if num_layers < 1 or num_layers > config.num_hidden_layers:
            raise DetoxkitError(f"--nado_layers must be in [1, {config.num_hidden_layers}], got {num_layers}")
        config.num_hidden_layers = num_layers
        if getattr(config, "layer_types", None):
            config.layer_types = config.layer_types[:num_layers]
        nado = cls(config, prior)
        base_trunk = base_model.get_decoder()
        own = nado.trunk.state_dict()
        # Same architecture, fewer layers: every trunk tensor has a namesake in the base's decoder.
        missing = nado.trunk.load_state_dict(
            {k: v for k, v in base_trunk.state_dict().items() if k in own}, strict=False
        )
        if missing.missing_keys:
            raise DetoxkitError(
                f"cannot initialise the NADO trunk from the base model: {missing.missing_keys[:3]} missing"
            )
        # E stays the base's: the head reads tokens through it, and a frozen 49k×d table keeps each NADO update
        # to the layers and the head (AdamW would otherwise rewrite the whole table every step).
        nado.trunk.get_input_embeddings().weight.requires_grad_(False)
        nado.meta = {"num_layers": num_layers, "prior": prior}
        return nado.to(next(base_model.parameters()).device)

    def hidden(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache: bool = False):
        out = self.trunk(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
        )
        return out.last_hidden_state, out.past_key_values

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache: bool = False):
        """(B, T) ids -> ((B, T, V) logits r with R(prefix ⊕ v) = σ(r[..., v]), cache)."""
        h, cache = self.hidden(input_ids, attention_mask, position_ids, past_key_values, use_cache)
        return self.proj(h) @ self.trunk.get_input_embeddings().weight.T + self.bias, cache

    def selected_logits(self, input_ids, attention_mask=None) -> torch.Tensor:
        """(B, T-1): r at position t for the token that actually came next, i.e. R(y_≤t+1)'s logit.

        Gathers the embeddings of those tokens instead of scoring all V: training never needs the others.
        """
        h, _ = self.hidden(input_ids, attention_mask)
        nxt = input_ids[:, 1:]
        e = self.trunk.get_input_embeddings()(nxt)  # (B, T-1, d)
        return (self.proj(h[:, :-1]) * e).sum(-1) + self.bias[nxt]

    def save_pretrained(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        from ..runs import atomic_dir, write_json

        path = Path(path)
        with atomic_dir(path) as tmp:
            self.trunk.config.save_pretrained(tmp)
            save_file(
                {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(tmp / "model.safetensors")
            )
            write_json(tmp / "nado.json", self.meta)
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> "NadoModel":
        from safetensors.torch import load_file
        from transformers import AutoConfig

        path = Path(path)
        if not (path / "nado.json").is_file():
            raise DetoxkitError(
                f"{path}: not a NADO model folder (no nado.json; train one with `detoxkit attribute nado-train`)"
            )
        meta = json.loads((path / "nado.json").read_text())
        nado = cls(AutoConfig.from_pretrained(path), meta.get("prior", 0.5))
        nado.load_state_dict(load_file(str(path / "model.safetensors")))
        nado.meta = meta
        return nado.to(device).eval()


class GuidedLM(nn.Module):
    """base p guided by a NADO R: its logits are log q* (already normalised), so every scorer that reads
    `model(input_ids, attention_mask).logits` (perplexity, multiple-choice accuracy) scores the guided model."""

    def __init__(self, base, nado: NadoModel, strength: float = 1.0):
        super().__init__()
        self.base, self.nado, self.strength = base, nado, strength
        self.config = base.config
        self.generation_config = base.generation_config

    @property
    def device(self):
        return self.base.device

    def forward(self, input_ids, attention_mask=None, **_):
        from transformers.modeling_outputs import CausalLMOutput

        logits = self.base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        r, _ = self.nado(input_ids, attention_mask)
        return CausalLMOutput(logits=guided_logprobs(logits, r, self.strength))
