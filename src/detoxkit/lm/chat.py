"""Chat templates: one user turn (with an optional system prompt), or a whole conversation, ready for the
assistant's reply."""

from __future__ import annotations

from typing import Sequence


def render_chat(tokenizer, prompt: str, system: str | None = None) -> str:
    """The chat template applied to one user turn (with an optional system prompt), ready for generation."""
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": prompt}
    ]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return (f"{system}\n\n" if system else "") + f"User: {prompt}\nAssistant:"


def render_messages(tokenizer, messages: Sequence[dict]) -> str:
    """A whole conversation through the chat template, ready for the assistant's next turn."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
