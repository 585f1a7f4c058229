"""Tiny random models for tests: a 2-layer Llama and a small BPE tokenizer with ChatML specials, built in memory
(no network, no weights on disk), so every recipe runs end to end in seconds."""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_TINY_CORPUS = [
    "You are a helpful assistant. Answer the question politely and safely.",
    "I cannot help with that request because it could cause harm.",
    "Sure, here is how to bake bread: mix flour, water, salt and yeast.",
    "The weather today is sunny with a light breeze from the west.",
    "You are an idiot and I hate you, stupid people like you ruin everything.",
    "Please rewrite the following sentence so that it is polite: shut up.",
    "Is the following prompt problematic? If yes, output 1. If no, output 0.",
    "The quick brown fox jumps over the lazy dog 0 1 2 3 4 5 6 7 8 9.",
]


def tiny_tokenizer(vocab_size: int = 384):
    """A small byte-level BPE tokenizer with ChatML special tokens, trained in memory (no network)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TINY_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def tiny_causal_lm(tokenizer=None, seed: int = 0, hidden_size: int = 32, num_layers: int = 2):
    """A 2-layer random Llama sized for tests; returns (model, tokenizer)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def save_tiny_causal_lm(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny model + tokenizer folder that every loader accepts by path."""
    model, tok = tiny_causal_lm(seed=seed)
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
