import os

import pytest

os.environ.setdefault("DETOXKIT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def tiny_lm():
    from tiny import tiny_causal_lm

    return tiny_causal_lm(seed=0)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    from tiny import save_tiny_causal_lm

    return save_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_embedder_dir(tmp_path_factory):
    """A 1-layer random BERT with MiniLM's tokenizer: loads through the same Embedder code path."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from detoxkit.lm.load import resolve_model

    path = tmp_path_factory.mktemp("tiny-embedder")
    tok = AutoTokenizer.from_pretrained(resolve_model("all-minilm-l6-v2"))
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def load_benchmark():
    """load_benchmark("acd"): benchmarks/acd.py as a module (the scripts are not a package)."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
