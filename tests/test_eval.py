import math

import pytest

from detoxkit.eval.classification import classification_metrics
from detoxkit.eval.detox import detox_metrics, j_score
from detoxkit.eval.generation import generation_toxicity, harmless_rate, over_refusal_rate
from detoxkit.eval.stats import mean_ci, rate, wilson_interval


def test_wilson_interval_known_value():
    lo, hi = wilson_interval(8, 10)
    assert abs(lo - 0.4902) < 1e-3 and abs(hi - 0.9433) < 1e-3
    assert wilson_interval(0, 10)[0] == 0.0


def test_generation_toxicity_by_hand():
    m = generation_toxicity([[0.1, 0.7], [0.2, 0.3]])
    assert math.isclose(m["expected_max_toxicity"]["value"], 0.5)
    assert m["toxicity_probability"]["value"] == 0.5 and m["toxicity_probability"]["n"] == 2
    with pytest.raises(ValueError):
        generation_toxicity([[]])


def test_rates():
    assert harmless_rate([0.1, 0.9, 0.2, 0.4])["value"] == 0.75
    assert over_refusal_rate([0.9, 0.1])["value"] == 0.5
    assert rate([True, False])["n"] == 2
    assert mean_ci([1.0, 1.0])["ci95"] == [1.0, 1.0]


def test_j_is_mean_of_products():
    """J is the mean over sentences of STA·SIM·FL, not the product of the three means (here 1/6 vs 2/3·0.8·2/3)."""
    assert j_score([1, 0, 1], [0.5, 0.9, 1.0], [1, 1, 0]) == [0.5, 0.0, 0.0]

    class Embedder:  # output i has cosine sims[i] with input i
        sims = [0.5, 0.9, 1.0]

        def encode(self, texts, **_):
            import math

            import torch

            rows = []
            for t in texts:
                kind, i = t.split(":")
                c = self.sims[int(i)]
                rows.append([1.0, 0.0] if kind == "in" else [c, math.sqrt(1 - c * c)])
            return torch.tensor(rows)

    inputs, outputs = ["in:0", "in:1", "in:2"], ["out:0", "out:1", "out:2"]
    toxic = {"out:1"}  # STA = [1, 0, 1]

    def toxicity(texts, prompts=None):
        return [1.0 if t in toxic else 0.0 for t in texts]

    def fluency(texts):
        return [1.0, 1.0, 0.0]  # FL = [1, 1, 0]

    m = detox_metrics(inputs, outputs, toxicity, Embedder(), fluency, None)
    assert m["J"]["value"] == pytest.approx(0.5 / 3)
    assert m["J"]["value"] != pytest.approx(m["STA"]["value"] * m["SIM"]["value"] * m["FL"]["value"])
    assert m["J"]["ci95"][0] >= 0.0  # a mean of [0, 1] scores: the normal interval is clipped to the range


def test_classification_metrics_by_hand():
    m = classification_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], n_boot=50)
    assert m["accuracy"]["value"] == 0.5 and m["roc_auc"]["value"] == 0.75
    assert m["precision"]["value"] == 0.5 and m["recall"]["value"] == 0.5
