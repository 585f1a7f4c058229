"""Adversarial Contrastive Decoding (Zhao et al. 2024): two opposite soft system prompts, contrasted per token.

Python API: ``generate`` / ``stream`` (options: ``DecodeOptions``) / ``score_completions`` (decode.py),
``SoftPrompt`` (core/soft_prompt.py), ``tune`` (tune.py), ``build_anchors`` (anchors.py), ``evaluate``
(evaluate.py); the CLI is ``detoxkit acd``.
"""

from ..lm.soft_prompt import SoftPrompt
from .decode import DecodeOptions, generate, score_completions, stream

__all__ = ["SoftPrompt", "DecodeOptions", "generate", "stream", "score_completions"]
