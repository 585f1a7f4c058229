"""Policies as data: per-category thresholds and actions for prompts and for answers, bound to API keys.

A policy file (YAML) holds named policies::

    policies:
      standard:
        prompt:                      # applied in the judge stage, to what the judge sees
          hate: {threshold: 0.5, action: block}
          self_harm: {threshold: 0.3, action: log}
        answer:                      # applied in the screen stage, to the decoded answer
          harassment: {threshold: 0.6, action: rewrite}

Categories are those of the category head (``detoxkit.scorers.categories``). Actions: ``block`` (a prompt gets the
block message; an answer is withheld), ``rewrite`` (an answer goes to the rewriter, withheld when there is none or
the rewrite is still flagged; on a prompt: its answer is rewritten), ``log`` (recorded in the trace only), ``allow``
(the category is never acted on). When several categories fire, the strongest action wins
(block > rewrite > log). The guard config binds API keys to policies (``tenants``) and says which policies a
request may choose with the ``X-Detoxkit-Policy`` header. Errors name the file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

ACTIONS = ("block", "rewrite", "log", "allow")  # strongest first
SIDES = ("prompt", "answer")
POLICY_HEADER = "x-detoxkit-policy"

# OpenAI's moderation categories, each from the detoxkit categories it is read from: one category gives its score;
# several give the smallest (the text must be both, e.g. harassing and violent); none: not scored (always 0).
OPENAI_CATEGORIES = {
    "harassment": ("harassment",),
    "harassment/threatening": ("harassment", "violence"),
    "hate": ("hate",),
    "hate/threatening": ("hate", "violence"),
    "illicit": ("illicit",),
    "illicit/violent": ("illicit", "violence"),
    "self-harm": ("self_harm",),
    "self-harm/intent": ("self_harm",),  # the labelled data does not tell intent from instructions
    "self-harm/instructions": ("self_harm",),
    "sexual": ("sexual",),
    "sexual/minors": (),  # no labelled data
    "violence": ("violence",),
    "violence/graphic": (),  # no labelled data
}


@dataclass(frozen=True)
class Rule:
    threshold: float
    action: str


@dataclass
class Policy:
    name: str
    prompt: dict[str, Rule] = field(default_factory=dict)
    answer: dict[str, Rule] = field(default_factory=dict)
    source: str = ""  # file:line, for messages

    def categories(self) -> set[str]:
        return set(self.prompt) | set(self.answer)

    def decide(self, side: str, scores: dict[str, float]) -> dict:
        """The trace entry of one text: its category scores, the categories whose rule fired, and the action."""
        rules = getattr(self, side)
        hits = {c: r.action for c, r in rules.items() if r.action != "allow" and scores.get(c, 0.0) >= r.threshold}
        action = next((a for a in ACTIONS if a in hits.values()), "allow")
        return {
            "policy": self.name,
            "action": action,
            "fired": hits,
            "scores": {c: round(s, 4) for c, s in scores.items()},
        }


def _node_line(node) -> int:
    return node.start_mark.line + 1


def _mapping(path, node, what: str, line_of=None):
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise DataError(path, f"{what} must be a mapping", _node_line(node), line_of)
    return [(k.value, k, v) for k, v in node.value]


def _rule(path, node, where: str, categories) -> Rule:
    import yaml

    items = dict((k, (kn, v)) for k, kn, v in _mapping(path, node, "a rule ({threshold, action})", where))
    for key, (kn, _) in items.items():
        if key not in ("threshold", "action"):
            raise DataError(path, "unknown rule field (known: threshold, action)", _node_line(kn), f"{where}.{key}")
    if "action" not in items or "threshold" not in items:
        missing = "action" if "action" not in items else "threshold"
        raise DataError(path, f"a rule needs {missing}", _node_line(node), f"{where}.{missing}")
    action = yaml.safe_load(yaml.serialize(items["action"][1]))
    if action not in ACTIONS:
        raise DataError(
            path,
            f"must be one of {', '.join(ACTIONS)}, got {action!r}",
            _node_line(items["action"][1]),
            f"{where}.action",
        )
    thr = yaml.safe_load(yaml.serialize(items["threshold"][1]))
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0.0 <= thr <= 1.0:
        raise DataError(
            path, f"must be a number in [0, 1], got {thr!r}", _node_line(items["threshold"][1]), f"{where}.threshold"
        )
    return Rule(float(thr), action)


def _policy(path, name: str, node, categories) -> Policy:
    policy = Policy(name, source=f"{path}:{_node_line(node)}")
    for side, side_key, side_node in _mapping(path, node, "a policy ({prompt, answer})", f"policies.{name}"):
        where = f"policies.{name}.{side}"
        if side not in SIDES:
            raise DataError(path, "unknown field (known: prompt, answer)", _node_line(side_key), where)
        rules = {}
        for cat, cat_key, rule_node in _mapping(path, side_node, "a mapping of category: rule", where):
            if categories is not None and cat not in categories:
                raise DataError(
                    path, f"unknown category (known: {', '.join(categories)})", _node_line(cat_key), f"{where}.{cat}"
                )
            rules[cat] = _rule(path, rule_node, f"{where}.{cat}", categories)
        setattr(policy, side, rules)
    return policy


def load_policies(path: str | Path, categories=None) -> dict[str, Policy]:
    """name -> Policy from a policy file; `categories`: the ones a rule may name (None: any)."""
    from ..config import compose_yaml

    path = Path(path)
    root = compose_yaml(path, "policy")
    if root is None:
        raise DataError(path, "empty policy file: it needs a `policies:` mapping")
    top = _mapping(path, root, "a policy file")
    for key, key_node, _ in top:
        if key != "policies":
            raise DataError(path, "unknown field (known: policies)", _node_line(key_node), key)
    node = next((v for k, _, v in top if k == "policies"), None)
    if node is None:
        raise DataError(path, "a policy file needs a `policies:` mapping", 1, "policies")
    return {
        name: _policy(path, name, pnode, categories) for name, _, pnode in _mapping(path, node, "policies", "policies")
    }


def openai_moderation(scores: dict[str, float], flagged_categories: set[str]) -> tuple[dict, dict, list[str]]:
    """OpenAI's (categories, category_scores) from detoxkit category scores, and the OpenAI keys left unscored."""
    cats, cat_scores, unscored = {}, {}, []
    for key, sources in OPENAI_CATEGORIES.items():
        if not sources or any(s not in scores for s in sources):
            cats[key], cat_scores[key] = False, 0.0
            unscored.append(key)
            continue
        cat_scores[key] = float(min(scores[s] for s in sources))
        cats[key] = all(s in flagged_categories for s in sources)
    return cats, cat_scores, unscored


def resolve_tenants(tenants: dict, policies: dict[str, Policy], default: str | None, choices) -> dict:
    """The config's tenants as key -> (policy name or None, allowed choices); unknown names are errors. Keys are
    named in messages only by their hashed id."""
    from ..errors import DetoxkitError
    from .ops import key_id

    def known(name, where):
        if name not in policies:
            raise DetoxkitError(f"{where}: unknown policy {name!r} (the policy file has: {', '.join(policies)})")
        return name

    if default is not None:
        known(default, "policy")
    for name in choices:
        known(name, "policy_choices")
    out = {}
    for key, spec in tenants.items():
        where = f"tenants[{key_id(str(key))}]"
        if not isinstance(key, str) or not key.strip():
            raise DetoxkitError(f"{where}: an API key must be a non-empty string")
        if isinstance(spec, str):
            spec = {"policy": spec}
        if not isinstance(spec, dict) or set(spec) - {"policy", "may_choose"}:
            raise DetoxkitError(f"{where}: must be a policy name or {{policy: NAME, may_choose: [NAMES]}}")
        policy = spec.get("policy")
        may = spec.get("may_choose") or []
        if not isinstance(may, list):
            raise DetoxkitError(f"{where}.may_choose: must be a list of policy names")
        out[key] = (None if policy is None else known(policy, f"{where}.policy"), tuple(known(m, where) for m in may))
    return out
