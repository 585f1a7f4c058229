"""Policies as data: per-category thresholds and actions, tenants bound to API keys, per-request choice, OpenAI's
moderation shape, and policy file errors. A tiny model with stand-in judge, screener and category head."""

import pytest
from fastapi.testclient import TestClient
from test_guard import ConstScreener, StandInRewriter, user
from test_guard_server import MODEL, error_of

from detoxkit.errors import DataError
from detoxkit.guard import Guard, GuardConfig
from detoxkit.guard.policy import OPENAI_CATEGORIES, load_policies
from detoxkit.guard.server import create_app, running_server

POLICIES = """\
policies:
  strict:
    prompt:
      violence: {threshold: 0.5, action: block}
      hate: {threshold: 0.5, action: block}
    answer:
      violence: {threshold: 0.5, action: rewrite}
      sexual: {threshold: 0.5, action: block}
  lenient:
    prompt:
      violence: {threshold: 0.5, action: log}
      hate: {threshold: 0.95, action: block}
"""
PROMPT = "how do I make a bomb"


class KeywordCategories:
    """Category scores from keywords: bomb/kill -> violence 0.9, hate -> hate 0.8, lewd -> sexual 0.9."""

    categories = ["harmful_request", "harassment", "hate", "violence", "sexual", "illicit"]
    thresholds = {c: 0.5 for c in categories}

    def __call__(self, texts):
        out = []
        for t in texts:
            s = dict.fromkeys(self.categories, 0.05)
            if "bomb" in t or "kill" in t:
                s["violence"] = 0.9
            if "hate" in t:
                s["hate"] = 0.8
            if "lewd" in t:
                s["sexual"] = 0.9
            out.append(s)
        return out


class ScriptedCategories(KeywordCategories):
    """As KeywordCategories, but the model's answers (texts not in `prompts`) score `answer` on one category."""

    def __init__(self, prompts, answer):
        self.prompts, self.answer = set(prompts), answer

    def __call__(self, texts):
        out = super().__call__(texts)
        for t, s in zip(texts, out):
            if t not in self.prompts and t != "a polite rewrite":
                s.update(self.answer)
        return out


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "policies.yaml"
    path.write_text(POLICIES)
    return path


def policy_guard(tiny_lm, policy_file, categorizer=None, rewriter=None, **kw):
    cfg = GuardConfig(port=0, screener="off", categories="stand-in", policy_file=str(policy_file), **kw)
    return Guard(
        *tiny_lm,
        cfg,
        screener=None,
        rewriter=rewriter,
        categorizer=categorizer or KeywordCategories(),
        policies=load_policies(policy_file),
    )


def tenant_client(tiny_lm, policy_file):
    tenants = {"key-a": {"policy": "strict", "may_choose": ["lenient"]}, "key-b": "lenient"}
    guard = policy_guard(tiny_lm, policy_file, tenants=tenants)
    return TestClient(create_app(guard, guard.config))


def chat(client, key, text=PROMPT, **headers):
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 3}
    return client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}", **headers})


def test_two_keys_one_prompt_two_decisions(tiny_lm, policy_file):
    with tenant_client(tiny_lm, policy_file) as client:
        a, b = chat(client, "key-a").json(), chat(client, "key-b").json()
        error_of(chat(client, "key-c"), 401, "invalid_api_key")  # a key no tenant holds
    assert a["choices"][0]["finish_reason"] == "content_filter"
    assert a["guard"]["judge"]["decision"] == "block" and a["guard"]["decode"] == {"decision": "skipped"}
    assert a["guard"]["judge"]["policy"]["policy"] == "strict"
    assert a["guard"]["judge"]["policy"]["fired"] == {"violence": "block"}
    assert b["guard"]["judge"]["decision"] == "off" and b["guard"]["decode"]["decision"] == "plain"
    assert b["guard"]["judge"]["policy"] == {
        "policy": "lenient",
        "action": "log",
        "fired": {"violence": "log"},
        "scores": {c: 0.9 if c == "violence" else 0.05 for c in KeywordCategories.categories},
    }


def test_per_request_policy_choice_allowed_and_refused(tiny_lm, policy_file):
    with tenant_client(tiny_lm, policy_file) as client:
        chosen = chat(client, "key-a", **{"X-Detoxkit-Policy": "lenient"}).json()
        own = chat(client, "key-b", **{"X-Detoxkit-Policy": "lenient"}).json()  # its own policy: always allowed
        refused = chat(client, "key-b", **{"X-Detoxkit-Policy": "strict"})
        unknown = chat(client, "key-a", **{"X-Detoxkit-Policy": "nope"})
        mod = client.post(
            "/v1/moderations",
            json={"input": PROMPT},
            headers={"Authorization": "Bearer key-b", "X-Detoxkit-Policy": "strict"},
        )
    assert chosen["guard"]["judge"]["policy"]["policy"] == "lenient" and chosen["choices"][0]["finish_reason"] != (
        "content_filter"
    )
    assert own["guard"]["judge"]["policy"]["policy"] == "lenient"
    err = error_of(refused, 403, "policy_not_allowed", "x-detoxkit-policy")
    assert err["type"] == "permission_error" and "lenient" not in err["message"].split("choose:")[0]
    error_of(unknown, 400, "policy_not_found")
    error_of(mod, 403, "policy_not_allowed")


def test_category_table_applied_to_prompts_and_answers(tiny_lm, policy_file):
    hate, fine = "I hate them", "tell me a story"
    # prompt rules: strict blocks hate at 0.5; lenient only at 0.95 (0.8 passes)
    guard = policy_guard(tiny_lm, policy_file)
    strict, lenient = guard.chat([user(hate), user(hate)], max_tokens=3, policies=["strict", "lenient"])
    assert strict.trace["judge"]["decision"] == "block" and strict.trace["judge"]["category"] == "hate"
    assert lenient.trace["judge"]["policy"]["action"] == "allow" and lenient.finish_reason != "content_filter"
    # answer rules: a violent answer is rewritten (strict), a sexual one withheld, lenient has no answer rules
    violent = ScriptedCategories([fine], {"violence": 0.9})
    guard = policy_guard(tiny_lm, policy_file, violent, StandInRewriter())
    r, kept = guard.chat([user(fine), user(fine)], max_tokens=3, policies=["strict", "lenient"])
    assert r.text == "a polite rewrite" and r.trace["rewrite"]["decision"] == "rewritten"
    assert r.trace["screen"]["policy"]["fired"] == {"violence": "rewrite"} and r.trace["screen"]["decision"] == "flag"
    assert kept.trace["screen"]["policy"]["action"] == "allow" and kept.text != "a polite rewrite"
    lewd = policy_guard(tiny_lm, policy_file, ScriptedCategories([fine], {"sexual": 0.9}), StandInRewriter())
    (w,) = lewd.chat([user(fine)], max_tokens=3, policies=["strict"])
    assert w.finish_reason == "content_filter" and w.trace["rewrite"]["decision"] == "withheld"
    assert w.text == GuardConfig().block_message and w.trace["screen"]["policy"]["action"] == "block"


def test_no_policy_leaves_the_trace_as_before(tiny_lm, policy_file):
    guard = policy_guard(tiny_lm, policy_file)
    (r,) = guard.chat([user(PROMPT)], max_tokens=3)  # no policy named and no config.policy
    assert "policy" not in r.trace["judge"] and r.trace["judge"] == {"decision": "off"}


def test_moderation_is_openai_shaped_and_parsed_by_the_openai_client(tiny_lm, policy_file):
    from openai import OpenAI
    from openai.types import ModerationCreateResponse

    guard = policy_guard(tiny_lm, policy_file, policy="strict")
    guard.screener = ConstScreener(0.2)
    with running_server(guard, guard.config) as url:
        client = OpenAI(base_url=url, api_key="unused", max_retries=0)
        typed = client.moderations.create(input=[PROMPT, "hello"], model=MODEL)
        raw = client.moderations.with_raw_response.create(input=PROMPT, model=MODEL).http_response.json()
    assert isinstance(typed, ModerationCreateResponse)
    bomb, hello = typed.results
    assert bomb.flagged and bomb.categories.violence and not bomb.categories.harassment_threatening
    assert bomb.category_scores.violence == 0.9 and bomb.category_scores.self_harm_intent == 0.0
    assert not hello.flagged and not hello.categories.violence
    assert bomb.category_applied_input_types.violence == ["text"]
    assert bomb.category_applied_input_types.sexual_minors == []  # no data: not scored
    result = raw["results"][0]
    for part in ("categories", "category_scores", "category_applied_input_types"):
        assert set(OPENAI_CATEGORIES) <= set(result[part])
    assert result["category_scores"]["stand-in"] == 0.2 and result["detoxkit"]["policy"]["policy"] == "strict"
    ModerationCreateResponse.model_validate(raw)  # strict: every required OpenAI field is there and typed


@pytest.mark.parametrize(
    "text,line,field",
    [
        (
            "policies:\n  p:\n    prompt:\n      hate: {threshold: 0.5, action: nuke}\n",
            4,
            "policies.p.prompt.hate.action",
        ),
        (
            "policies:\n  p:\n    answer:\n      hate: {threshold: 2, action: block}\n",
            4,
            "policies.p.answer.hate.threshold",
        ),
        ("policies:\n  p:\n    prompt:\n      gore: {threshold: 0.5, action: block}\n", 4, "policies.p.prompt.gore"),
        ("policies:\n  p:\n    replies: {}\n", 3, "policies.p.replies"),
        ("policies:\n  p:\n    prompt:\n      hate: {threshold: 0.5}\n", 4, "policies.p.prompt.hate.action"),
    ],
)
def test_bad_policy_file_is_one_line_naming_file_line_and_field(tmp_path, text, line, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DataError) as e:
        load_policies(path, categories=KeywordCategories.categories)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}:{line}: field {field!r}: ")


def test_policy_config_checks(policy_file):
    from detoxkit.errors import DetoxkitError
    from detoxkit.guard.policy import resolve_tenants

    with pytest.raises(DetoxkitError, match="categories"):
        GuardConfig(policy_file=str(policy_file))
    policies = load_policies(policy_file)
    with pytest.raises(DetoxkitError, match="unknown policy 'gone'") as e:
        resolve_tenants({"sk-secret": "gone"}, policies, None, [])
    assert "sk-secret" not in str(e.value)


def test_shipped_policies_name_only_categories_the_packaged_head_scores():
    from pathlib import Path

    from detoxkit.scorers.categories import load_category_head
    from detoxkit.scorers.head import WEIGHTS

    head, meta = load_category_head(WEIGHTS / "category_head.safetensors")
    path = Path(__file__).parents[1] / "configs" / "policies" / "guard_policies.yaml"
    assert path.read_text().startswith("# detoxkit serve ")
    policies = load_policies(path, categories=head.categories)
    assert {"standard", "strict", "lenient"} <= set(policies) and meta["embedder"] == "all-minilm-l6-v2"
