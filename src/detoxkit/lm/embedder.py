"""The sentence embedder (MiniLM by default): mean-pooled, L2-normalised embeddings for similarity and scorer heads."""

from __future__ import annotations

from .load import DEFAULT_EMBEDDER, resolve_device, resolve_model, torch_dtype


class Embedder:
    """Mean-pooled, L2-normalised sentence embeddings (the sentence-transformers recipe for MiniLM).

    pooling="last": the last layer's mean (the standard sentence embedding, used for similarity);
    pooling="layers": every layer's normalised mean, concatenated (n, layers·dim). Classifier heads read
    the latter: implicit hate is better separated in the middle layers (benchmarks/results/scorers.json
    compares the two on ToxiGen-200).
    """

    def __init__(
        self, name_or_path: str = DEFAULT_EMBEDDER, device: str = "cpu", max_length: int = 128, dtype: str = "float32"
    ):
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model(name_or_path)
        self.name = name_or_path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, dtype=torch_dtype(dtype)).to(resolve_device(device)).eval()
        self.device, self.max_length = device, max_length
        self.dim = self.model.config.hidden_size
        self.num_layers = self.model.config.num_hidden_layers

    def output_dim(self, pooling: str = "last") -> int:
        return self.dim * (self.num_layers if pooling == "layers" else 1)

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False, pooling: str = "last"):
        """(n, output_dim(pooling)) float32 tensor."""
        import torch

        from ..runs import progress

        if pooling not in ("last", "layers"):
            raise ValueError(f"pooling must be 'last' or 'layers', got {pooling!r}")
        # Sorting by length keeps padding (and wasted compute) small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.output_dim(pooling))
        for s in progress(range(0, len(texts), batch_size), desc="embedding", unit="batch", disable=not show_progress):
            idx = order[s : s + batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            with torch.inference_mode():
                result = self.model(**enc, output_hidden_states=pooling == "layers")
            hidden = result.hidden_states[1:] if pooling == "layers" else (result.last_hidden_state,)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden[0].dtype)
            pooled = [
                torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1) for h in hidden
            ]
            out[idx] = torch.cat(pooled, dim=-1).float().cpu()  # float32 out, whatever the weights
        return out


def load_embedder(name_or_path: str = DEFAULT_EMBEDDER, device: str = "cpu", dtype: str = "float32") -> Embedder:
    return Embedder(name_or_path, device, dtype=dtype)
