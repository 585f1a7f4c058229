"""Soft system prompts: n×d trainable embeddings spliced where the chat template puts the system prompt.

PEFT's prompt tuning prepends virtual tokens before the whole input (ahead of `<|im_start|>system`) and one
adapter serves a whole batch, so it can neither sit in the system slot nor put two different prompts in
two rows of one forward. Here each row of a batch names its own :class:`SoftPrompt`, and the templated
input is assembled as ``embed(prefix) ++ soft ++ embed(suffix [++ completion])``, where prefix/suffix are
the template's text before and after the system content (found by rendering a sentinel as the system
message and splitting on it). A soft prompt initialised from a text therefore gives exactly the model's
input for that text as a hard system prompt (tests check the logits agree).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import DetoxkitError
from .batch import pad_id, positions_from_mask

SENTINEL = "\ue000detoxkit-system-slot\ue000"  # private-use characters: no template or prompt contains them
FORMAT = "detoxkit-soft-prompt-v1"


class SoftPrompt(nn.Module):
    """A trainable (n, d) system prompt, with the text it started from and the model/template it belongs to."""

    def __init__(self, embeddings: torch.Tensor, init_text: str = "", model_name: str = "", template: str = ""):
        super().__init__()
        if embeddings.dim() != 2:
            raise DetoxkitError(f"soft prompt embeddings must be (n, d), got shape {tuple(embeddings.shape)}")
        self.embeddings = nn.Parameter(embeddings.detach().clone().float())
        self.init_text, self.model_name, self.template = init_text, model_name, template

    @classmethod
    def from_text(cls, model, tokenizer, text: str, model_name: str = "") -> "SoftPrompt":
        """Initialise from the model's own token embeddings of `text` (ACD eq. 1: z_init = τ_θ(p_init))."""
        ids = tokenizer.encode(text, add_special_tokens=False)
        emb = model.get_input_embeddings().weight
        return cls(
            emb[torch.tensor(ids, dtype=torch.long, device=emb.device)].detach(),
            text,
            model_name,
            getattr(tokenizer, "chat_template", None) or "",
        )

    @property
    def n_tokens(self) -> int:
        return self.embeddings.shape[0]

    def save(self, path: str | Path) -> Path:
        """One safetensors file; init text, model name and chat template travel in its metadata."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "init_text": self.init_text, "model_name": self.model_name, "template": self.template}
        tmp = path.with_name(f".{path.name}.tmp")  # write then rename: a crash never leaves half a file
        save_file(
            {"embeddings": self.embeddings.detach().contiguous().cpu()},
            str(tmp),
            metadata={"detoxkit": json.dumps(meta)},
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SoftPrompt":
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise DetoxkitError(f"{path}: soft prompt file not found")
        try:
            with safe_open(str(path), "pt") as f:
                raw = (f.metadata() or {}).get("detoxkit")
                if raw is None or "embeddings" not in f.keys():
                    raise DetoxkitError(f"{path}: not a detoxkit soft prompt (no 'detoxkit' metadata or 'embeddings')")
                emb = f.get_tensor("embeddings")
            meta = json.loads(raw)
        except DetoxkitError:
            raise
        except Exception as e:  # SafetensorError, OSError, bad JSON metadata: all mean "not a soft prompt file"
            raise DetoxkitError(f"{path}: not a readable safetensors soft prompt ({type(e).__name__}: {e})") from None
        if emb.ndim != 2:
            raise DetoxkitError(f"{path}: field 'embeddings' must be (tokens, width), got shape {tuple(emb.shape)}")
        return cls(emb, meta.get("init_text", ""), meta.get("model_name", ""), meta.get("template", ""))

    def check_compatible(self, model, tokenizer, where: str = "soft prompt") -> None:
        """A soft prompt only means something for the model width and chat template it was tuned with."""
        d = model.get_input_embeddings().weight.shape[1]
        if self.embeddings.shape[1] != d:
            raise DetoxkitError(
                f"{where}: width {self.embeddings.shape[1]} does not match the model's {d} "
                f"(tuned for {self.model_name or 'another model'})"
            )
        tmpl = getattr(tokenizer, "chat_template", None) or ""
        if self.template and tmpl and self.template != tmpl:
            raise DetoxkitError(f"{where}: tuned with a different chat template (model {self.model_name!r})")


def template_pieces(tokenizer, prompt: str) -> tuple[list[int], list[int]]:
    """Token ids of the templated input before and after the system content, for one user prompt.

    Returns (prefix_ids, suffix_ids); suffix ends with the generation prompt (`<|im_start|>assistant\\n`).
    """
    from .chat import render_chat

    if not getattr(tokenizer, "chat_template", None):
        raise DetoxkitError("soft system prompts need a tokenizer with a chat template that has a system role")
    text = render_chat(tokenizer, prompt, system=SENTINEL)
    if text.count(SENTINEL) != 1:
        raise DetoxkitError(
            "the chat template does not place the system message verbatim once; cannot find the system-prompt slot"
        )
    before, after = text.split(SENTINEL)
    return tokenizer.encode(before, add_special_tokens=False), tokenizer.encode(after, add_special_tokens=False)


@dataclass
class SplicedBatch:
    """A left-padded batch of soft-prompted chat inputs.

    inputs_embeds (B, T, d); attention_mask (B, T); position_ids (B, T) counting real tokens only;
    input_ids (B, T) with pad at padding and soft-prompt positions (for scoring the completion);
    completion_mask (B, T), 1 on completion tokens.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    input_ids: torch.Tensor
    completion_mask: torch.Tensor

    def model_inputs(self) -> dict:
        return {
            "inputs_embeds": self.inputs_embeds,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }


def splice_rows(
    model, pieces: list[list[torch.Tensor | list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Assemble rows from pieces (token-id lists are embedded, tensors (n, d) are used as they are).

    Rows are left-padded with zeros; returns (inputs_embeds (B,T,d), attention_mask (B,T), input_ids (B,T)),
    input_ids holding pad_id at soft and padding positions. Gradients flow into the tensor pieces.
    """
    emb_layer = model.get_input_embeddings()
    device, dtype = emb_layer.weight.device, emb_layer.weight.dtype
    rows, ids_rows = [], []
    for row in pieces:
        parts, ids = [], []
        for p in row:
            if isinstance(p, torch.Tensor):
                parts.append(p.to(device=device, dtype=dtype))
                ids.extend([pad_id] * p.shape[0])
            elif p:
                t = torch.tensor(p, dtype=torch.long, device=device)
                parts.append(emb_layer(t))
                ids.extend(p)
        rows.append(torch.cat(parts, 0))
        ids_rows.append(ids)
    width = max(r.shape[0] for r in rows)
    d = rows[0].shape[1]
    embeds = torch.stack([torch.cat([r.new_zeros(width - r.shape[0], d), r], 0) for r in rows])
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    for i, (r, ids) in enumerate(zip(rows, ids_rows)):
        mask[i, width - r.shape[0] :] = 1
        input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long, device=device)
    return embeds, mask, input_ids


def build_inputs(
    model,
    tokenizer,
    prompts: list[str],
    soft_prompts: list[SoftPrompt | torch.Tensor],
    completions: list[str] | None = None,
) -> SplicedBatch:
    """Row i = chat template of prompts[i] with soft_prompts[i] in the system slot (+ completions[i]).

    soft_prompts: one per row (the same object may appear in many rows; two different ones batch fine).
    completions, if given, are appended after the generation prompt and marked in completion_mask;
    the completion ends with the tokenizer's eos so that stopping is learned too.
    """
    if len(soft_prompts) != len(prompts) or (completions is not None and len(completions) != len(prompts)):
        raise DetoxkitError("build_inputs: prompts, soft_prompts and completions must have the same length")
    pad = pad_id(tokenizer)
    rows, n_comp = [], []
    for i, (prompt, sp) in enumerate(zip(prompts, soft_prompts)):
        before, after = template_pieces(tokenizer, prompt)
        comp = []
        if completions is not None:
            comp = tokenizer.encode(completions[i], add_special_tokens=False) + [tokenizer.eos_token_id]
        rows.append([before, sp.embeddings if isinstance(sp, SoftPrompt) else sp, after + comp])
        n_comp.append(len(comp))
    embeds, mask, input_ids = splice_rows(model, rows, pad)
    cmask = torch.zeros_like(mask)
    for i, n in enumerate(n_comp):
        if n:
            cmask[i, -n:] = 1
    return SplicedBatch(embeds, mask, positions_from_mask(mask), input_ids, cmask)


def freeze(model) -> None:
    """Freeze every model weight (ACD tunes only the prompts; the model never changes)."""
    for p in model.parameters():
        p.requires_grad_(False)


def assert_frozen(model) -> None:
    """Raise if any model weight is trainable or received a gradient."""
    bad = [n for n, p in model.named_parameters() if p.requires_grad or p.grad is not None]
    if bad:
        raise AssertionError(f"model weights must stay frozen, but {len(bad)} have gradients (e.g. {bad[0]})")
