"""SRO (Xie, Li, Zhu, 2024): a detoxifying rewriter learned from toxic text alone, guided by a screener.

``Rewriter.from_pretrained(path).rewrite(texts)`` uses a trained rewriter; ``detoxkit sro train`` trains one.
"""

from .rewrite import INSTRUCTION, Rewriter

__all__ = ["INSTRUCTION", "Rewriter"]
