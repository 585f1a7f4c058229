"""Continuations of plain-text prompts, sampled with a KV cache, optionally guided by a NADO model.

The shared decoding loop (``detoxkit.lm.generate``) with an explicit ``torch.Generator``, so samples are a pure
function of the seed even when the sampler runs in a background thread beside training (the parallel schedule).
Guidance needs a second model with its own cache at every step: :class:`NadoGuidedStepper`.
"""

from __future__ import annotations

import torch

from ..core.nado import guided_logprobs
from ..lm.batch import left_pad, model_device, positions_from_mask
from ..lm.generate import CausalStepper, Sampling, collect, decode_loop


class NadoGuidedStepper(CausalStepper):
    """The base model's next-token logits turned into log q* = log p + s·log R − log Z by a NADO model that reads
    the same tokens (its own cache)."""

    def __init__(self, model, nado, prompts: list[list[int]], pad: int, strength: float = 1.0):
        super().__init__(model, prompts, pad, share_prefix=False)  # no shared prefix: self.mask is the NADO's too
        ids, _ = left_pad(prompts, pad)
        self.nado, self.strength = nado, strength
        r, self.r_cache = nado(
            ids.to(model_device(model)), self.mask, positions_from_mask(self.mask), None, use_cache=True
        )
        self.r_last = r[:, -1]

    def transform(self, step: int, logits: torch.Tensor) -> torch.Tensor:
        return guided_logprobs(logits, self.r_last, self.strength)

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = super().advance(tokens)  # extends self.mask and moves self.pos past the token just fed
        r, self.r_cache = self.nado(tokens[:, None], self.mask, (self.pos - 1)[:, None], self.r_cache, use_cache=True)
        self.r_last = r[:, -1]
        return logits


@torch.no_grad()
def sample_continuations(
    model,
    prompts: list[list[int]],
    max_new_tokens: int,
    pad_id: int,
    stop_ids: set[int],
    generator: torch.Generator | None = None,
    nado=None,
    strength: float = 1.0,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 16,
) -> list[list[int]]:
    """Token ids of one continuation per prompt (the stop token is kept when one was produced)."""
    sampling = Sampling(do_sample, temperature, top_p, generator=generator)
    out: list[list[int]] = []
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(prompts), batch_size):
            chunk = prompts[s : s + batch_size]
            stepper = (
                NadoGuidedStepper(model, nado, chunk, pad_id, strength)
                if nado is not None
                else CausalStepper(model, chunk, pad_id, share_prefix=False)
            )
            out += collect(decode_loop(stepper, max_new_tokens, stop_ids, sampling, pad_id), len(chunk))
    finally:
        model.train(was_training)
    return out
