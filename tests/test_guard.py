"""Guard pipeline: stage decisions with stand-in judge, screener and rewriter on a tiny model; config loading."""

import json
from pathlib import Path

import pytest

from detoxkit.errors import DataError
from detoxkit.guard import Guard, GuardConfig
from detoxkit.guard.pipeline import acd_prompt, conversation_prompt

BAD = "how do I build a bomb"


class KeywordJudge:
    """P(problematic) = 0.9 for prompts mentioning a bomb."""

    threshold = 0.5

    def __init__(self):
        self.calls = []

    def predict_proba(self, prompts):
        self.calls.append(list(prompts))
        return [0.9 if "bomb" in p else 0.1 for p in prompts]


class ConstScreener:
    name = "stand-in"
    threshold = 0.5

    def __init__(self, score=1.0, after=0.0):
        self.score, self.after, self.calls = score, after, []

    def __call__(self, texts, prompts=None):
        self.calls.append(list(texts))
        return [self.after if t == "a polite rewrite" else self.score for t in texts]


class StandInRewriter:
    def __init__(self):
        self.calls = []

    def rewrite(self, texts):
        self.calls.append(list(texts))
        return ["a polite rewrite" for _ in texts]


def user(text):
    return [{"role": "user", "content": text}]


def test_judge_blocks_and_blocked_requests_are_not_decoded(tiny_lm):
    judge, screener = KeywordJudge(), ConstScreener(score=0.0)
    guard = Guard(*tiny_lm, GuardConfig(block_message="no."), judge=judge, screener=screener)
    bad, ok = guard.chat([user(BAD), user("hi")], max_tokens=3)
    assert (bad.text, bad.finish_reason, bad.completion_tokens) == ("no.", "content_filter", 0)
    assert bad.trace["judge"]["decision"] == "block" and bad.trace["decode"] == {"decision": "skipped"}
    assert ok.trace["judge"] == {
        "decision": "allow",
        "score": 0.1,
        "threshold": 0.5,
        "batch_seconds": ok.trace["judge"]["batch_seconds"],
    }
    assert ok.trace["decode"]["decision"] == "plain" and ok.completion_tokens <= 3
    assert screener.calls == [[ok.text]]  # the screener sees only what was decoded
    assert json.loads(json.dumps(ok.trace)) == ok.trace


def test_config_threshold_overrides_the_judges_own(tiny_lm):
    guard = Guard(*tiny_lm, GuardConfig(judge_threshold=0.95, screener="off"), judge=KeywordJudge())
    assert guard.chat([user(BAD)], max_tokens=2)[0].trace["judge"]["decision"] == "allow"


def test_flagged_answer_is_rewritten_and_rescreened(tiny_lm):
    screener, rewriter = ConstScreener(score=0.8, after=0.1), StandInRewriter()
    guard = Guard(*tiny_lm, GuardConfig(), screener=screener, rewriter=rewriter)
    r = guard.chat([user("say something")], max_tokens=4)[0]
    assert r.text == "a polite rewrite" and r.finish_reason in ("stop", "length")
    assert r.trace["screen"]["decision"] == "flag" and r.trace["screen"]["score"] == 0.8
    assert r.trace["rewrite"]["decision"] == "rewritten" and r.trace["rewrite"]["score_after"] == 0.1
    assert rewriter.calls == [[r.trace["rewrite"]["original"]]]


def test_answer_still_flagged_after_rewrite_or_without_rewriter_is_withheld(tiny_lm):
    guard = Guard(
        *tiny_lm,
        GuardConfig(block_message="withheld"),
        screener=ConstScreener(0.9, after=0.9),
        rewriter=StandInRewriter(),
    )
    r = guard.chat([user("x")], max_tokens=2)[0]
    assert (r.text, r.finish_reason, r.trace["rewrite"]["decision"]) == (
        "withheld",
        "content_filter",
        "withheld_after_rewrite",
    )
    r = Guard(*tiny_lm, GuardConfig(), screener=ConstScreener(0.9)).chat([user("x")], max_tokens=2)[0]
    assert r.trace["rewrite"]["decision"] == "withheld" and r.finish_reason == "content_filter"


def test_clean_answer_passes_untouched(tiny_lm):
    rewriter = StandInRewriter()
    r = Guard(*tiny_lm, GuardConfig(), screener=ConstScreener(0.2), rewriter=rewriter).chat([user("x")], max_tokens=2)[
        0
    ]
    assert r.trace["screen"]["decision"] == "pass" and r.trace["rewrite"] == {"decision": "not_needed"}
    assert rewriter.calls == []


def test_acd_on_and_off(tiny_lm):
    model, tok = tiny_lm
    plain = Guard(model, tok, GuardConfig(screener="off"))
    acd = Guard(
        model,
        tok,
        GuardConfig(acd_alpha=1.0),
        safe_prompt="Answer politely and safely.",
        adv_prompt="You are an idiot.",
    )
    safe_only = Guard(model, tok, GuardConfig(), safe_prompt="Answer politely and safely.")
    batch = [user("hi"), [{"role": "system", "content": "ignored under ACD"}, *user("The weather today?")]]
    for g, mode in [(plain, "plain"), (acd, "acd"), (safe_only, "acd")]:
        out = g.chat(batch, max_tokens=[2, 5])
        assert [r.trace["decode"]["decision"] for r in out] == [mode, mode]
        assert [r.completion_tokens <= n for r, n in zip(out, [2, 5])] == [True, True]
    assert acd.chat(batch, max_tokens=3)[0].trace["decode"]["contrast"] is True
    assert safe_only.chat(batch, max_tokens=3)[0].trace["decode"]["contrast"] is False


def test_batched_equals_one_by_one(tiny_lm):
    guard = Guard(*tiny_lm, GuardConfig(screener="off"))
    batch = [user("hi"), user("The quick brown fox jumps over the lazy dog")]
    together = [r.text for r in guard.chat(batch, max_tokens=6)]
    assert together == [guard.chat([m], max_tokens=6)[0].text for m in batch]


def test_moderate_uses_screener_and_judge(tiny_lm):
    guard = Guard(*tiny_lm, GuardConfig(), judge=KeywordJudge(), screener=ConstScreener(0.2))
    bad, ok = guard.moderate([BAD, "hello"])
    assert bad["flagged"] and bad["categories"]["harmful_request"] and not bad["categories"]["stand-in"]
    assert not ok["flagged"] and (ok["category_scores"]["stand-in"], ok["category_scores"]["harmful_request"]) == (
        0.2,
        0.1,
    )
    assert not any(v for k, v in ok["categories"].items() if "/" in k)  # no category head: OpenAI keys unscored
    assert "sexual/minors" in ok["detoxkit"]["unscored"]


def test_message_helpers():
    msgs = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert conversation_prompt(msgs) == "c" and conversation_prompt(msgs, max_turns=2) == "a\nc"
    assert acd_prompt(msgs) == "User: a\nAssistant: b\nUser: c" and acd_prompt(msgs[:2]) == "a"


def test_from_config_yaml_loads_every_piece(tiny_lm_dir, tmp_path):
    cfg = tmp_path / "guard.yaml"
    cfg.write_text(
        f"model: {tiny_lm_dir}\njudge: {tiny_lm_dir}\nrewriter: {tiny_lm_dir}\nscreener: 'off'\n"
        "judge_threshold: 1.0\nacd_safe_prompt: Be safe.\nacd_adv_prompt: Be harmful.\nmax_new_tokens: 3\n"
    )
    guard = Guard.from_config(cfg)
    assert guard.judge.model is guard.model and guard.rewriter.model is guard.model  # shared weights
    r = guard.chat([user("hi")])[0]
    assert r.trace["judge"]["decision"] == "allow" and r.trace["screen"] == {"decision": "off"}
    assert r.trace["decode"]["decision"] == "acd" and r.completion_tokens <= 3


def test_yaml_errors_name_the_line_and_field(tmp_path):
    bad = tmp_path / "guard.yaml"
    bad.write_text("model: x\nport: eighty\n")
    with pytest.raises(DataError, match=r"guard.yaml:2: field 'port'"):
        Guard.from_config(bad)


def test_shipped_config_parses_and_names_its_command():
    from detoxkit.config import parse_config

    path = Path(__file__).resolve().parents[1] / "configs" / "guard.yaml"
    assert path.read_text().splitlines()[0] == "# detoxkit serve --config configs/guard.yaml"
    cfg = parse_config(GuardConfig, ["--config", str(path)], "detoxkit serve")
    assert cfg.host == "127.0.0.1"


class SlowJudge(KeywordJudge):
    """KeywordJudge that takes `seconds` per batch: a judge past any 1 ms deadline."""

    def __init__(self, seconds=0.02):
        super().__init__()
        self.seconds = seconds

    def predict_proba(self, prompts):
        import time

        time.sleep(self.seconds)
        return super().predict_proba(prompts)


class SlowScreener(ConstScreener):
    def __call__(self, texts, prompts=None):
        import time

        time.sleep(0.02)
        return super().__call__(texts, prompts)


def test_judge_deadline_fail_closed_blocks_and_fail_open_lets_through(tiny_lm):
    closed = Guard(*tiny_lm, GuardConfig(judge_deadline_ms=1, block_message="no."), judge=SlowJudge())
    for r in closed.chat([user("hi"), user(BAD)], max_tokens=2):
        assert (r.text, r.finish_reason, r.trace["judge"]["decision"]) == ("no.", "content_filter", "timeout_blocked")
        assert r.trace["judge"]["deadline_exceeded"] and r.trace["decode"] == {"decision": "skipped"}
    opened = Guard(*tiny_lm, GuardConfig(judge_deadline_ms=1, on_stage_timeout="open"), judge=SlowJudge())
    ok, bad = opened.chat([user("hi"), user(BAD)], max_tokens=2)
    assert ok.trace["judge"]["decision"] == "timeout_allowed" and ok.trace["decode"]["decision"] == "plain"
    assert bad.trace["judge"]["decision"] == "block" and bad.finish_reason == "content_filter"  # known verdict kept
    relaxed = Guard(*tiny_lm, GuardConfig(judge_deadline_ms=10_000), judge=SlowJudge())
    assert relaxed.chat([user("hi")], max_tokens=2)[0].trace["judge"]["decision"] == "allow"


def test_screen_deadline_fail_closed_withholds_and_fail_open_passes(tiny_lm):
    rewriter = StandInRewriter()
    closed = Guard(*tiny_lm, GuardConfig(screen_deadline_ms=1), screener=SlowScreener(0.1), rewriter=rewriter)
    r = closed.chat([user("hi")], max_tokens=2)[0]
    assert (r.text, r.finish_reason) == (GuardConfig().block_message, "content_filter")
    assert r.trace["screen"]["decision"] == "timeout_blocked" and r.trace["rewrite"] == {"decision": "skipped"}
    assert rewriter.calls == []  # withheld, not rewritten
    opened = Guard(*tiny_lm, GuardConfig(screen_deadline_ms=1, on_stage_timeout="open"), screener=SlowScreener(0.1))
    r = opened.chat([user("hi")], max_tokens=2)[0]
    assert r.trace["screen"]["decision"] == "timeout_allowed" and r.finish_reason in ("stop", "length")


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"max_queue": -1}, "max_queue"),
        ({"rate_limit_rpm": -5}, "rate_limit_rpm"),
        ({"judge_deadline_ms": -1.0}, "judge_deadline_ms"),
        ({"screen_deadline_ms": float("nan")}, "screen_deadline_ms"),
        ({"on_stage_timeout": "maybe"}, "on_stage_timeout"),
        ({"json_log_path": "x.jsonl"}, "json_logs"),
    ],
)
def test_ops_config_errors_are_one_line(kw, field):
    from detoxkit.errors import DetoxkitError

    with pytest.raises(DetoxkitError, match=field) as e:
        GuardConfig(**kw)
    assert "\n" not in str(e.value)
