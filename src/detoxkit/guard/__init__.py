"""The guard: judge, safe decoding, screening and rewriting in one pipeline, behind an OpenAI-compatible server.

Python API: ``Guard.from_config("configs/guard.yaml").chat([[{"role": "user", "content": "hi"}]])``;
the server is ``detoxkit serve --config configs/guard.yaml``.
"""

from .config import GuardConfig
from .pipeline import ChatResult, Guard

__all__ = ["ChatResult", "Guard", "GuardConfig"]
