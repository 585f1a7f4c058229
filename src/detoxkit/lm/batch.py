"""Token batches: padding to a rectangle, prompt + completion pairs with a completion mask, the pad id.

Everything here works on token-id lists and never changes a tokenizer's settings (its padding side, say), so the
same tokenizer can be shared by threads and by models that pad differently.
"""

from __future__ import annotations

import torch


def pad_id(tokenizer) -> int:
    """The tokenizer's pad id, or its end-of-sequence id when it has none (padding is masked either way)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text as it stands (no special tokens added: chat templates carry their own)."""
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def _pad(seqs: list[list[int]], pad: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        if s:
            cols = slice(width - len(s), width) if left else slice(0, len(s))
            ids[i, cols], mask[i, cols] = torch.tensor(s, dtype=torch.long), 1
    return ids, mask


def left_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and attention mask, each row ending at column T-1: new tokens follow every row directly."""
    return _pad(seqs, pad, left=True)


def right_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and attention mask, each row starting at column 0: positions equal those of the unpadded row."""
    return _pad(seqs, pad, left=False)


def pair_batch(prompts: list[list[int]], completions: list[list[int]], pad: int):
    """Right-padded prompt + completion rows: (ids, attention mask, completion mask), each (B, T); the completion
    mask is 1 on exactly the completion's tokens (prompt and completion are tokenised apart, lm-eval style)."""
    ids, attn = right_pad([p + c for p, c in zip(prompts, completions)], pad)
    cmask = torch.zeros_like(ids)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        cmask[i, len(p) : len(p) + len(c)] = 1
    return ids, attn, cmask


def positions_from_mask(mask: torch.Tensor, offset: torch.Tensor | int = 0) -> torch.Tensor:
    """(B, T) 0/1 mask -> (B, T) positions of real tokens (0, 1, ...) + offset; padding gets position 0 + offset.

    Left padding must not shift rotary positions, so positions are counted over real tokens only.
    """
    pos = mask.long().cumsum(-1) - 1
    off = offset if isinstance(offset, int) else offset.view(-1, 1)
    return pos.clamp(min=0) + off


def model_device(model) -> torch.device:
    return next(model.parameters()).device
