"""Batched chat generation with a Hugging Face causal LM (left padding, greedy or sampling)."""

from __future__ import annotations


def render_chat(tokenizer, prompt: str, system: str | None = None) -> str:
    """The chat template applied to one user turn (with an optional system prompt), ready for generation."""
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": prompt}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return (f"{system}\n\n" if system else "") + f"User: {prompt}\nAssistant:"


def generate(model, tokenizer, prompts: list[str], system: str | None = None, max_new_tokens: int = 64,
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, num_return_sequences: int = 1,
             batch_size: int = 8, chat: bool = True, show_progress: bool = False,
             min_new_tokens: int = 0) -> list[list[str]]:
    """Completions for each prompt: a list of `num_return_sequences` strings per prompt."""
    import torch

    from .runs import progress

    texts = [render_chat(tokenizer, p, system) if chat else p for p in prompts]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # new tokens must follow every prompt directly
    out: list[list[str]] = []
    try:
        for s in progress(range(0, len(texts), batch_size), desc="generating", unit="batch", disable=not show_progress):
            enc = tokenizer(texts[s : s + batch_size], return_tensors="pt", padding=True, add_special_tokens=not chat)
            enc = enc.to(model.device)
            kwargs = dict(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=do_sample, num_return_sequences=num_return_sequences,
                          pad_token_id=tokenizer.pad_token_id)
            if do_sample:
                kwargs.update(temperature=temperature, top_p=top_p)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            with torch.inference_mode():
                ids = model.generate(**enc, **kwargs)
            new = tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for i in range(0, len(new), num_return_sequences):
                out.append([t.strip() for t in new[i : i + num_return_sequences]])
    finally:
        tokenizer.padding_side = side
    return out


def choose_next_token(logits, do_sample: bool, temperature: float, top_p: float, generator=None):
    """(k, V) logits -> (k,) next tokens: argmax, or a sample after temperature and nucleus (top-p) filtering."""
    import torch

    if not do_sample:
        return logits.argmax(-1)
    logits = logits.float() / max(temperature, 1e-5)
    if top_p < 1.0:
        sorted_logits, idx = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest set whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)
