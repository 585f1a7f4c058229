"""The one scorer protocol every judge in detoxkit follows."""

from __future__ import annotations

from typing import Sequence


class Scorer:
    """``scorer(texts, prompts=None) -> list[float]`` in [0, 1]: the probability of the bad class.

    Subclasses set ``name`` and ``version`` and implement :meth:`score_batch`. ``prompts`` is used by
    scorers that judge a response given its prompt (harm) and ignored by the others.
    """

    name = "scorer"
    version = "0"
    batch_size = 64
    threshold = 0.5

    def score_batch(self, texts: list[str], prompts: list[str] | None) -> list[float]:
        raise NotImplementedError

    def __call__(
        self, texts: Sequence[str], prompts: Sequence[str] | None = None, batch_size: int | None = None
    ) -> list[float]:
        if isinstance(texts, str):
            raise TypeError("a scorer takes a list of texts, not one string")
        texts = list(texts)
        if prompts is not None and len(prompts) != len(texts):
            raise ValueError(f"{len(prompts)} prompts for {len(texts)} texts")
        bs = batch_size or self.batch_size
        out: list[float] = []
        for s in range(0, len(texts), bs):
            out.extend(
                float(x)
                for x in self.score_batch(texts[s : s + bs], None if prompts is None else list(prompts[s : s + bs]))
            )
        return out

    def flags(self, texts: Sequence[str], prompts: Sequence[str] | None = None) -> list[bool]:
        """Scores at or above the scorer's threshold."""
        return [s >= self.threshold for s in self(texts, prompts)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"


def as_reward_function(scorer: Scorer):
    """A TRL reward function (``reward(prompts, completions, **kw) -> list[float]``): 1 - score."""

    def reward(prompts=None, completions=None, **kwargs):
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        plain_prompts = None
        if prompts is not None:
            plain_prompts = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
        return [1.0 - s for s in scorer(texts, plain_prompts)]

    reward.__name__ = f"not_{scorer.name.replace('-', '_')}"
    return reward
