"""The rewriter: a causal LM prompted (through its chat template) to detoxify one text.

``Rewriter.from_pretrained(path).rewrite(texts)`` is the Python API; ``detoxkit rewrite "text"`` the command.
A trained rewriter folder is a plain ``save_pretrained`` model plus ``rewriter.json`` (the instruction, few-shot
turns and generation length it was trained with); any other causal LM name or folder gives zero-shot prompting.

The prompt is the instruction plus FEW_SHOT as earlier chat turns. With the instruction alone SmolLM2-135M mostly
answers with apologies ("I'm sorry for your loss...") or copies the input; two hand-written (not ParaDetox) example
turns make it edit the sentence instead (higher SIM on held-out sentences; toxic copies, which the screener fails,
remain), so SRO starts near a paraphrase. Examples inside one user message were copied verbatim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config import DeviceArgs, Recipe, arg
from ..errors import DetoxkitError

INSTRUCTION = (
    "Rewrite the following text so that it is polite and not offensive, keeping its meaning. "
    "Reply with the rewritten text only.\n\nText: {text}"
)
FEW_SHOT = (
    ("this is a fucking stupid idea .", "this is a bad idea ."),
    ("shut up , you idiot , nobody asked you", "please be quiet , nobody asked you"),
)
REWRITER_FILE = "rewriter.json"


def build_prompt(text: str, instruction: str = INSTRUCTION) -> str:
    return instruction.format(text=text)


def prompt_messages(text: str, instruction: str = INSTRUCTION, shots=FEW_SHOT) -> list[dict]:
    """Chat messages: each (toxic, rewrite) shot as a user/assistant exchange, then the text to rewrite."""
    msgs = []
    for toxic, polite in shots:
        msgs += [
            {"role": "user", "content": build_prompt(toxic, instruction)},
            {"role": "assistant", "content": polite},
        ]
    return msgs + [{"role": "user", "content": build_prompt(text, instruction)}]


def prompt_ids(tokenizer, texts: list[str], instruction: str = INSTRUCTION, shots=FEW_SHOT) -> list[list[int]]:
    """The chat-templated rewrite prompt of each text, as token ids (the template adds its own specials)."""
    from ..lm.generate import render_chat

    if not shots:
        return [
            tokenizer(render_chat(tokenizer, build_prompt(t, instruction)), add_special_tokens=False)["input_ids"]
            for t in texts
        ]
    return [
        tokenizer(
            tokenizer.apply_chat_template(
                prompt_messages(t, instruction, shots), tokenize=False, add_generation_prompt=True
            ),
            add_special_tokens=False,
        )["input_ids"]
        for t in texts
    ]


def decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


class Rewriter:
    """A detoxifying rewriter: ``Rewriter.from_pretrained(path).rewrite(["you idiot"])``."""

    def __init__(
        self, model, tokenizer, instruction: str = INSTRUCTION, max_new_tokens: int = 48, name: str = "", shots=FEW_SHOT
    ):
        self.model, self.tokenizer = model, tokenizer
        self.instruction, self.max_new_tokens, self.name = instruction, max_new_tokens, name
        self.shots = tuple(tuple(s) for s in shots)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = "smollm2-135m-instruct",
        device: str = "cpu",
        max_new_tokens: int | None = None,
        dtype: str = "float32",
    ) -> "Rewriter":
        """A trained rewriter folder (with rewriter.json; its weights in full or as a LoRA adapter of the base model
        that rewriter.json names), or any causal LM for zero-shot prompting."""
        from ..lm.adapters import is_adapter, merged
        from ..lm.load import load_model_and_tokenizer

        meta_path = Path(name_or_path) / REWRITER_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        if is_adapter(name_or_path):
            if not meta.get("base_model"):
                raise DetoxkitError(f"{meta_path}: field 'base_model' missing (the adapter's base model)")
            model, tok = load_model_and_tokenizer(meta["base_model"], dtype, device)
            model = merged(model, name_or_path)
        else:
            model, tok = load_model_and_tokenizer(name_or_path, dtype, device)
        # Folders written before few-shot prompting existed were trained on the bare instruction.
        shots = meta.get("few_shot", []) if meta else FEW_SHOT
        return cls(
            model,
            tok,
            meta.get("instruction", INSTRUCTION),
            max_new_tokens or meta.get("max_new_tokens", 48),
            name=str(name_or_path),
            shots=shots,
        )

    def rewrite(self, texts: list[str] | str, batch_size: int = 16, show_progress: bool = False) -> list[str] | str:
        """Rewrites, one per text (greedy); a single string gives a single string."""
        from ..lm.generate import generate_ids

        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        # Shortest first keeps left padding (wasted compute) small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        prompts = prompt_ids(self.tokenizer, [texts[i] for i in order], self.instruction, self.shots)
        ids = generate_ids(
            self.model,
            self.tokenizer,
            prompts,
            self.max_new_tokens,
            batch_size=batch_size,
            show_progress=show_progress,
            desc="rewriting",
        )
        out = [""] * len(texts)
        for i, completion in zip(order, ids):
            out[i] = decode(self.tokenizer, completion)
        return out[0] if single else out


def save_rewriter_adapter(tuned, path: str | Path, rank: int) -> dict:
    """A trained rewriter folder (`tuned`, with rewriter.json) re-saved as a rank-`rank` LoRA adapter of its base
    model (lm.adapters: its linear layers' ΔW, fp16) plus the same rewriter.json; returns the adapter stats."""
    from ..lm.adapters import save_adapter, weight_deltas
    from ..lm.load import load_model
    from ..runs import atomic_dir, write_json

    meta = json.loads((Path(tuned) / REWRITER_FILE).read_text())
    base = meta["base_model"]
    deltas = weight_deltas(load_model(base), load_model(str(tuned)))
    with atomic_dir(Path(path)) as tmp:
        stats = save_adapter(tmp, deltas, rank, base)
        write_json(tmp / REWRITER_FILE, {**meta, "adapter": stats})
    return stats


def save_rewriter(
    model, tokenizer, path: str | Path, instruction: str, max_new_tokens: int, shots=FEW_SHOT, **info
) -> Path:
    """save_pretrained + rewriter.json, written into a temporary folder and renamed into place."""
    from ..runs import atomic_dir, write_json

    path = Path(path)
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(
            tmp / REWRITER_FILE,
            {
                "instruction": instruction,
                "few_shot": [list(x) for x in shots],
                "max_new_tokens": max_new_tokens,
                **info,
            },
        )
    return path


@dataclass
class RewriteConfig(DeviceArgs):
    """detoxkit rewrite: rewrite toxic text with a trained SRO rewriter (a `detoxkit sro train` output_dir/final
    folder) or, given any causal LM, by two-shot prompting. Prints one rewrite per line."""

    texts: list[str] = arg([], "texts to rewrite", positional=True)
    model: str = arg("runs/sro/final", "rewriter folder or causal LM")
    input: Optional[str] = arg(None, "a file of texts (JSONL/CSV/TSV/Parquet/TXT) instead of arguments")
    column: str = arg("text", "the text column of --input")
    max_new_tokens: Optional[int] = arg(None, "rewrite length limit (None: the rewriter's own)")
    batch_size: int = arg(16, "rewrites per batch")


def run(cfg: RewriteConfig) -> list[str]:
    from ..data import texts_from

    texts = texts_from(cfg.texts, cfg.input, cfg.column, "rewrite")
    rewriter = Rewriter.from_pretrained(cfg.model, cfg.device, cfg.max_new_tokens, cfg.dtype)
    outputs = rewriter.rewrite(texts, batch_size=cfg.batch_size, show_progress=len(texts) > cfg.batch_size)
    for out in outputs:
        print(out.replace("\n", " "))
    return outputs


REWRITE = Recipe(RewriteConfig, run)
