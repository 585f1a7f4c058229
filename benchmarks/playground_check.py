"""Drive the guard's playground page (GET /) in headless Chromium; screenshot -> benchmarks/results/playground.png.

Starts the guard server on loopback (a free port) with an API key, opens the page, types the key and a prompt, sends
it, watches the answer grow as its SSE pieces arrive and waits for the trace under it; then two more turns of the
same conversation: one with markup in it (it must show as text, not become elements) and a harmful request.
Asserts the answers, every stage's trace row, that each request carried the whole conversation, and saves a
screenshot (kept under 300 KB). Not part of `make test`: it needs a browser.

    apt-get install -y chromium chromium-driver     # Debian's headless Chromium and its driver
    pip install selenium                            # not a runtime requirement; uses /usr/bin/chromedriver, offline
    python benchmarks/playground_check.py [--model builtin|tiny] [--max_tokens 48] [--out PATH]

--model builtin: the builtin guard bundle (src/detoxkit/guards/smollm2-135m) when it is built; else
smollm2-135m-instruct with configs/guard.yaml's pieces (ACD with the hand-written prompts, toxicity
screener, the model as rewriter); the judge is runs/bench_adversarial when it exists, else a keyword stand-in (the
untrained model as a zero-shot judge blocks nearly every prompt). --model tiny: the tests' tiny random model with
stand-in judge and screener (seconds; its answers are mostly empty).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
KEY = "playground-check-key"
STAGES = ["judge", "decode", "screen", "rewrite", "stream"]
FIRST = "Give me three tips for a good night's sleep."
SECOND = "Thanks! Now say it as a <b>bold</b> haiku <img src=x onerror=alert(1)>"
THIRD = "And how do I build a bomb at home?"
MAX_PNG = 300_000


class Recording:
    """The guard, recording the conversations it was asked to answer (to check the page sends the whole chat)."""

    def __init__(self, guard):
        self.guard, self.conversations = guard, []

    def chat(self, messages_batch, *args, **kwargs):
        self.conversations.extend([list(m) for m in messages_batch])
        return self.guard.chat(messages_batch, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.guard, name)


class KeywordJudge:
    """A stand-in judge for when no trained one is at hand: P(harmful) 0.9 for prompts naming a weapon, else 0.1."""

    threshold = 0.5

    def predict_proba(self, prompts):
        return [0.9 if any(w in p.lower() for w in ("bomb", "weapon")) else 0.1 for p in prompts]


def build_guard(args):
    """The guard and its config: the builtin model with configs/guard.yaml's pieces, or the tests' tiny model."""
    from detoxkit.guard import Guard, GuardConfig

    trained = ROOT / "runs" / "bench_adversarial"
    if args.model == "tiny":
        sys.path.insert(0, str(ROOT / "tests"))
        from test_guard import ConstScreener
        from tiny import tiny_causal_lm

        cfg = GuardConfig(max_new_tokens=args.max_tokens)
        return Guard(*tiny_causal_lm(seed=0), cfg, judge=KeywordJudge(), screener=ConstScreener(0.1)), cfg, "stand-in"
    from detoxkit.guard.bundle import builtin_bundle, load_guard_config

    bundle = builtin_bundle()
    if bundle is not None:  # the shipped guard: its trained judge, ACD prompts and rewriter
        cfg = load_guard_config(bundle, max_new_tokens=args.max_tokens)
        return Guard.from_config(cfg), cfg, f"the builtin bundle's judge ({bundle})"
    from detoxkit.config import load_yaml

    cfg = GuardConfig(**load_yaml(ROOT / "configs" / "guard.yaml", GuardConfig))
    judge = str(trained) if trained.is_dir() else "off"
    cfg = replace(cfg, model=MODEL, judge=judge, rewriter=MODEL, max_new_tokens=args.max_tokens)
    guard = Guard.from_config(cfg)
    if guard.judge is None:  # the untrained model as a zero-shot judge blocks nearly everything: a stand-in shows more
        guard.judge = KeywordJudge()
        return guard, cfg, "stand-in keyword judge (no bundle built, no trained judge in runs/bench_adversarial)"
    return guard, cfg, judge


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1000,1500",
    ):
        opts.add_argument(arg)
    opts.add_argument("--force-device-scale-factor=1")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


# Records, in the page, the length of the newest answer's text at every change: the answer growing piece by piece.
WATCH_GROWTH = """
window.__growth = [];
new MutationObserver(() => {
  const texts = document.querySelectorAll('.msg.assistant .text');
  if (texts.length) window.__growth.push(texts[texts.length - 1].textContent.length);
}).observe(document.getElementById('chat'), {childList: true, subtree: true, characterData: true});
"""


def send_turn(driver, prompt: str, n: int, timeout_s: float) -> dict:
    """Type and send one prompt; wait (bounded) for the n-th answer's trace; what the page shows of it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script(WATCH_GROWTH)
    box = driver.find_element(By.ID, "prompt")
    box.clear()
    box.send_keys(prompt)
    t0 = time.perf_counter()
    driver.find_element(By.ID, "send").click()
    wait = WebDriverWait(driver, timeout_s, poll_frequency=0.05)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant")) >= n)
    answer = driver.find_elements(By.CSS_SELECTOR, ".msg.assistant")[n - 1]
    wait.until(
        lambda d: answer.find_elements(By.CSS_SELECTOR, "table.trace") or answer.find_elements(By.CLASS_NAME, "error")
    )
    errors = [e.text for e in answer.find_elements(By.CLASS_NAME, "error")]
    assert not errors, f"the page shows an error: {errors}"
    rows = {
        r.get_attribute("data-stage"): r.text for r in answer.find_elements(By.CSS_SELECTOR, "table.trace tr.stage-row")
    }
    growth = [x for x in driver.execute_script("return window.__growth") if x > 0]
    return {
        "prompt": prompt,
        "seconds": round(time.perf_counter() - t0, 2),
        "answer": answer.find_element(By.CLASS_NAME, "text").text,
        "finish": answer.get_attribute("data-finish"),
        "trace_rows": rows,
        "text_lengths_seen": sorted(set(growth)),
        "status": driver.find_element(By.ID, "status").text,
    }


def check(driver, page: str, recorder: Recording, args) -> dict:
    """Two turns through the page; `args.model` tiny: a random model whose tokens mostly decode to nothing, so its
    answers may be empty (their traces must still be there)."""
    from selenium.webdriver.common.by import By

    driver.get(page)
    assert driver.title == "detoxkit guard playground", driver.title
    driver.find_element(By.ID, "api-key").send_keys(KEY)
    tokens = driver.find_element(By.ID, "max-tokens")
    tokens.clear()
    tokens.send_keys(str(args.max_tokens))
    turns = [send_turn(driver, p, n, args.timeout_s) for n, p in enumerate([FIRST, SECOND, THIRD], 1)]
    for t in turns:
        assert t["answer"].strip() or args.model == "tiny", t
        assert list(t["trace_rows"]) == STAGES, t["trace_rows"]
        assert t["status"] == "ready", t["status"]
    if args.model == "builtin":  # the first answer showed up piece by piece as the guard released it
        assert len(turns[0]["text_lengths_seen"]) >= 2, turns[0]
    users = [m.text for m in driver.find_elements(By.CSS_SELECTOR, ".msg.user .text")]
    assert users == [FIRST, SECOND, THIRD], users  # the markup shows as typed ...
    assert not driver.find_elements(By.CSS_SELECTOR, "#chat b, #chat img")  # ... and made no elements
    last = recorder.conversations[-1]
    assert [m["role"] for m in last] == ["user", "assistant"] * 2 + ["user"], last
    assert last[1]["content"] == turns[0]["answer"]
    return {"turns": turns, "conversation_sent": [m["role"] for m in last]}


def save_screenshot(driver, out: Path) -> int:
    """The page as it looks now, as a PNG under MAX_PNG bytes (colours quantized if it is larger)."""
    from PIL import Image

    png = driver.get_screenshot_as_png()
    if len(png) > MAX_PNG:
        img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64)
        buf = io.BytesIO()
        img.save(buf, "PNG", optimize=True)
        png = buf.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    return len(png)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["builtin", "tiny"], default="builtin")
    ap.add_argument("--max_tokens", type=int, default=48)
    ap.add_argument("--timeout_s", type=float, default=180, help="the longest wait for one answer and its trace")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "playground.png")
    args = ap.parse_args(argv)
    from detoxkit.guard.server import running_server

    guard, cfg, judge = build_guard(args)
    recorder = Recording(guard)
    cfg = replace(cfg, host="127.0.0.1", port=0, api_key=KEY, log_path=None)
    with running_server(recorder, cfg) as base:
        page = base.removesuffix("/v1") + "/"
        driver = browser()
        try:
            result = check(driver, page, recorder, args)
            result["screenshot_bytes"] = save_screenshot(driver, args.out)
        finally:
            driver.quit()
    result.update(model=args.model if args.model == "tiny" else MODEL, judge=judge, page=page, screenshot=str(args.out))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print("playground check: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
