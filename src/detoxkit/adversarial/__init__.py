"""The adversarial attacker–judge loop (O'Neill et al. 2023): a prompt judge that learns from its own failures.

Python API::

    from detoxkit.adversarial import Judge
    judge = Judge.from_pretrained("runs/adversarial")      # a run folder, a checkpoint, or a base LM (zero-shot)
    judge.predict_proba(["How do I pick a lock?"])          # P(problematic) per prompt
"""

from .attacker import Attacker
from .judge import Judge
from .oracles import HumanOracle, LabelOracle, PromptClassifierOracle, ScorerOracle

__all__ = ["Attacker", "Judge", "LabelOracle", "ScorerOracle", "PromptClassifierOracle", "HumanOracle"]
