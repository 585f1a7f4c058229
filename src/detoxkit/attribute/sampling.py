"""Continuations of plain-text prompts, sampled with a KV cache, optionally guided by a NADO model.

A loop of our own rather than `model.generate`: guidance needs a second model with its own cache at every
step, and sampling takes an explicit `torch.Generator`, so samples are a pure function of the seed even when
the sampler runs in a background thread beside training (the parallel schedule).
"""

from __future__ import annotations

import torch

from ..core.nado import guided_logprobs
from ..core.soft_prompt import positions_from_mask
from ..generation import choose_next_token


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


def right_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


@torch.no_grad()
def sample_continuations(model, prompts: list[list[int]], max_new_tokens: int, pad_id: int, stop_ids: set[int],
                         generator: torch.Generator | None = None, nado=None, strength: float = 1.0,
                         do_sample: bool = True, temperature: float = 1.0, top_p: float = 1.0,
                         batch_size: int = 16) -> list[list[int]]:
    """Token ids of one continuation per prompt (the stop token is kept when one was produced)."""
    out: list[list[int]] = []
    was_training = model.training
    model.eval()
    for s in range(0, len(prompts), batch_size):
        ids, mask = left_pad(prompts[s : s + batch_size], pad_id)
        ids, mask = ids.to(model.device), mask.to(model.device)
        pos = positions_from_mask(mask)
        cache = r_cache = None
        done = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
        new: list[torch.Tensor] = []
        step_ids = ids
        for _ in range(max_new_tokens):
            o = model(input_ids=step_ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
            cache, logits = o.past_key_values, o.logits[:, -1]
            if nado is not None:
                r, r_cache = nado(step_ids, mask, pos, r_cache, use_cache=True)
                logits = guided_logprobs(logits, r[:, -1], strength)
            nxt = choose_next_token(logits, do_sample, temperature, top_p, generator)
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            new.append(nxt)
            done |= torch.isin(nxt, torch.tensor(sorted(stop_ids), device=nxt.device))
            if bool(done.all()):
                break
            step_ids = nxt[:, None]
            mask = torch.cat([mask, torch.ones_like(step_ids)], 1)
            pos = pos[:, -1:] + 1
        gen = torch.stack(new, 1).tolist()
        for row in gen:
            seq = []
            for t in row:
                seq.append(t)
                if t in stop_ids:
                    break
            out.append(seq)
    model.train(was_training)
    return out
