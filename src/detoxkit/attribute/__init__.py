"""Attribute-controlled fine-tuning (Meng et al., EMNLP 2024 Findings) with a NADO auxiliary model.

Python API: ``NadoModel`` / ``GuidedLM`` (nado.py), ``sample_continuations`` (sampling.py), ``train``
(train.py), ``run`` (nado_train.py), ``evaluate`` (evaluate.py); the losses are in ``detoxkit.core.nado``.
The CLI is ``detoxkit attribute nado-train | train | eval``.
"""

from .nado import GuidedLM, NadoModel

__all__ = ["NadoModel", "GuidedLM"]
