"""ParaDetox metrics for rewrites: STA, SIM, FL and J = mean(STA·SIM·FL), plus BLEU/chrF against references.

- STA_i = 1 if the toxicity scorer gives the output < threshold (the official metric is also binary).
- SIM_i = cosine of the input's and output's sentence embeddings, clipped to [0, 1] (the official metric uses
  Wieting et al.'s paraphrase embeddings, a download; MiniLM is the offline stand-in).
- FL_i = 1 if the output's mean token negative log-likelihood under a reference LM is no worse than the
  `quantile` (default 95th percentile) of ParaDetox's human rewrites under the same LM. The official FL is a
  RoBERTa CoLA acceptability classifier (a download); "as fluent as 95% of human rewrites" keeps its binary,
  human-anchored reading: human rewrites score FL ≈ 0.95 by construction.
  Known weakness: short rewrites are scored without context, so the threshold is loose, and repetitive or
  made-up-word salad can stay below it; collapsed rewriters have scored both high and low FL (the SRO benchmark
  in benchmarks/results/sro.json records which). J also rests on STA and SIM; read FL together with the outputs.

The training-signal scorers above (the toxicity head and MiniLM) are the ones SRO's screener optimises. Given an
independent toxicity scorer (sharing no weights with them: the profanity word model), `detox_metrics` also
reports an "independent" J: STA from that scorer, SIM_chrF = sentence chrF of the output against its input / 100
(a character n-gram content score, no model), and the same FL (the reference LM is not a training signal).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

from .stats import mean_ci, rate


def j_score(sta: Sequence[float], sim: Sequence[float], fl: Sequence[float]) -> list[float]:
    """Per-sentence J_i = STA_i · SIM_i · FL_i (the official J is their mean)."""
    if not (len(sta) == len(sim) == len(fl)):
        raise ValueError("STA, SIM and FL need one value per sentence")
    return [a * b * c for a, b, c in zip(sta, sim, fl)]


def mean_token_nll(model, tokenizer, texts: list[str], batch_size: int = 16) -> list[float]:
    from ..lm.score import score_continuations

    lps, ns = score_continuations(model, tokenizer, [""] * len(texts), texts, batch_size)
    return [-lp / max(n, 1) for lp, n in zip(lps, ns)]


@dataclass
class FluencyProxy:
    """FL_i = 1[mean NLL_i <= threshold]; threshold = a quantile of human rewrites' NLL (cached per LM)."""

    model: object
    tokenizer: object
    threshold: float

    @classmethod
    def calibrate(
        cls,
        model,
        tokenizer,
        model_name: str,
        references: list[str] | None = None,
        quantile: float = 0.95,
        n: int = 500,
        seed: int = 0,
        data_dir: str | None = None,
    ) -> "FluencyProxy":
        from ..assets import cache_dir

        # Only the default calibration (ParaDetox rewrites, seeded sample) is cached: an explicit reference
        # list must never overwrite the threshold other runs read.
        key = (
            None
            if references is not None
            else cache_dir() / "fluency" / f"{model_name.replace('/', '_')}-q{quantile}-n{n}-s{seed}.json"
        )
        if key is not None and key.exists():
            return cls(model, tokenizer, json.loads(key.read_text())["threshold"])
        if references is None:
            import random

            from ..data import load_builtin

            refs = [r for row in load_builtin("paradetox", data_dir) for r in row["references"]]
            references = random.Random(seed).sample(refs, min(n, len(refs)))
        import numpy as np

        threshold = float(np.quantile(mean_token_nll(model, tokenizer, references), quantile))
        if key is not None:
            from ..runs import write_json

            write_json(key, {"threshold": threshold, "quantile": quantile, "n": len(references), "model": model_name})
        return cls(model, tokenizer, threshold)

    def __call__(self, texts: list[str]) -> list[float]:
        return [1.0 if nll <= self.threshold else 0.0 for nll in mean_token_nll(self.model, self.tokenizer, texts)]


def similarity(embedder, inputs: list[str], outputs: list[str]) -> list[float]:
    a, b = embedder.encode(inputs), embedder.encode(outputs)
    return (a * b).sum(-1).clamp(min=0.0, max=1.0).tolist()


def content_chrf(inputs: list[str], outputs: list[str]) -> list[float]:
    """Per-sentence chrF of each output against its input, in [0, 1]: content kept, judged without a model."""
    import sacrebleu

    return [sacrebleu.sentence_chrf(y, [x]).score / 100.0 for x, y in zip(inputs, outputs)]


def independent_metrics(
    inputs: list[str], outputs: list[str], toxicity_scorer, fl: list[float], threshold: float = 0.5
) -> dict:
    """STA (the given scorer), SIM_chrF, FL and J = mean(STA·SIM_chrF·FL), each with a 95% interval."""
    tox = toxicity_scorer(outputs)
    sta = [1.0 if t < threshold else 0.0 for t in tox]
    sim = content_chrf(inputs, outputs)
    j = j_score(sta, sim, fl)
    return {
        "n": len(outputs),
        "scorers": {"STA": getattr(toxicity_scorer, "name", "toxicity"), "SIM": "chrF", "FL": "fluency"},
        "STA": rate([s == 1.0 for s in sta]),
        "SIM": mean_ci(sim, bounds=(0.0, 1.0)),
        "FL": rate([f == 1.0 for f in fl]),
        "J": mean_ci(j, bounds=(0.0, 1.0)),
        "per_sentence": {"toxicity": tox, "STA": sta, "SIM": sim, "FL": fl, "J": j},
    }


def _signal_metrics(inputs, outputs, toxicity_scorer, embedder, fl: list[float], threshold: float) -> dict:
    tox = toxicity_scorer(outputs)
    sta = [1.0 if t < threshold else 0.0 for t in tox]
    sim = similarity(embedder, inputs, outputs)
    j = j_score(sta, sim, fl)
    return {
        "n": len(outputs),
        "STA": rate([s == 1.0 for s in sta]),
        "SIM": mean_ci(sim, bounds=(0.0, 1.0)),
        "FL": rate([f == 1.0 for f in fl]),
        "J": mean_ci(j, bounds=(0.0, 1.0)),
        "per_sentence": {"toxicity": tox, "STA": sta, "SIM": sim, "FL": fl, "J": j},
    }


def detox_metrics(
    inputs: list[str],
    outputs: list[str],
    toxicity_scorer,
    embedder,
    fluency: FluencyProxy,
    references: list[list[str]] | None = None,
    threshold: float = 0.5,
    independent_toxicity=None,
) -> dict:
    """STA, SIM, FL, J (each with n and a 95% interval) and, given references, BLEU and chrF (sacrebleu).
    With independent_toxicity, also "independent": the same metrics from scorers that share no weights with
    the training signal (see independent_metrics). toxicity_scorer None: the top-level figures are the
    independent ones."""
    fl = fluency(outputs)
    if toxicity_scorer is None:
        out = independent_metrics(inputs, outputs, independent_toxicity, fl, threshold)
    else:
        out = _signal_metrics(inputs, outputs, toxicity_scorer, embedder, fl, threshold)
        if independent_toxicity is not None:
            out["independent"] = independent_metrics(inputs, outputs, independent_toxicity, fl, threshold)
            out["independent"].pop("per_sentence")
    if references:
        import sacrebleu

        width = max(len(r) for r in references)
        refs = [[r[k] if k < len(r) else r[0] for r in references] for k in range(width)]
        out["BLEU"] = sacrebleu.corpus_bleu(outputs, refs).score
        out["chrF"] = sacrebleu.corpus_chrf(outputs, refs).score
        out["self_BLEU"] = sacrebleu.corpus_bleu(outputs, [inputs]).score
    return out
