"""The playground page at GET /: served without a key, its elements and its script are there, it loads nothing from
elsewhere and puts no text into the page as HTML. Driving it in a browser is benchmarks/playground_check.py."""

import re
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_guard import ConstScreener, KeywordJudge

from detoxkit.guard import Guard, GuardConfig
from detoxkit.guard.server import create_app

KEY = "playground-test-key"


@pytest.fixture(scope="module")
def client(tiny_lm):
    guard = Guard(*tiny_lm, GuardConfig(), judge=KeywordJudge(), screener=ConstScreener(0.1))
    with TestClient(create_app(guard, GuardConfig(port=0, api_key=KEY))) as c:
        yield c


def test_page_needs_no_key_and_has_its_elements(client):
    assert client.get("/v1/models").status_code == 401  # the API still needs the key
    resp = client.get("/")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    html = resp.text
    for element_id in ("chat", "chat-form", "prompt", "send", "stop", "api-key", "model", "max-tokens", "status"):
        assert re.search(rf'\bid="{element_id}"', html), element_id
    assert re.search(r'<input id="api-key" type="password"', html)
    assert '<script src="/playground.js"></script>' in html
    assert "<script>" not in html  # no inline script (the CSP would refuse it)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from a CDN: it works offline


def test_script_is_served_and_streams_with_the_key(client):
    resp = client.get("/playground.js")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/javascript")
    js = resp.text
    assert '"/v1/chat/completions"' in js and "stream: true" in js
    assert '"Bearer " + key' in js and "getReader()" in js
    for stage in ("judge", "decode", "screen", "rewrite", "stream"):
        assert f'"{stage}"' in js
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", js)
    assert not re.search(r"https?://", js)


def test_the_page_is_package_data():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib")
    import tomllib

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["detoxkit"]
    static = root / "src" / "detoxkit" / "guard" / "static"
    for name in ("index.html", "playground.js"):
        rel = (static / name).relative_to(root / "src" / "detoxkit").as_posix()
        assert any(Path(rel).match(p) for p in patterns), rel
