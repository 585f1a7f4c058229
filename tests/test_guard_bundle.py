"""The builtin guard bundle: `detoxkit serve` and `detoxkit demo` use it when it is built, and fall back to the old
defaults when it is not. The builtin bundle is stood in for by a tmp folder (a tiny model, pieces off)."""

import pytest

from detoxkit.commands.demo import DemoConfig, demo_guard_config, guard_counts, outcome
from detoxkit.guard import GuardConfig, bundle
from detoxkit.guard.config import is_off
from detoxkit.guard.server import serve_config, startup_lines


def write_bundle(folder, model, extra=""):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "guard.yaml").write_text(
        f"model: {model}\njudge: off\nscreener: off\nrewriter: off\nserved_model_name: bundle-guard\n{extra}"
    )
    return folder


@pytest.fixture
def builtin(tmp_path, monkeypatch, tiny_lm_dir):
    """The builtin bundle, moved to a tmp folder for the test."""
    folder = write_bundle(tmp_path / "guards" / "smollm2-135m", tiny_lm_dir)
    monkeypatch.setattr(bundle, "BUILTIN_BUNDLE", folder)
    return folder


@pytest.fixture
def no_builtin(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "BUILTIN_BUNDLE", tmp_path / "not-built")


def test_builtin_bundle_is_the_packaged_folder_once_built(builtin, monkeypatch, tmp_path):
    assert bundle.builtin_bundle() == builtin
    monkeypatch.setattr(bundle, "BUILTIN_BUNDLE", tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    assert bundle.builtin_bundle() is None  # a folder without guard.yaml is not built yet


def test_serve_with_no_flags_serves_the_builtin_bundle_and_flags_override_it(builtin, tiny_lm_dir):
    cfg, source = serve_config([])
    assert cfg.model == str(tiny_lm_dir) and cfg.served_model_name == "bundle-guard" and is_off(cfg.screener)
    assert source == f"builtin guard bundle {builtin}"
    assert startup_lines(cfg, None, source)[0].startswith(f"detoxkit serve: builtin guard bundle {builtin}: ")
    cfg, _ = serve_config(["--served_model_name", "flagged", "--port", "0"])
    assert (cfg.served_model_name, cfg.port, cfg.model) == ("flagged", 0, str(tiny_lm_dir))


def test_serve_config_takes_a_bundle_folder_or_a_yaml(builtin, tmp_path, tiny_lm_dir):
    other = write_bundle(tmp_path / "other", tiny_lm_dir, "judge: judge\nmax_new_tokens: 7\n")
    (other / "judge").mkdir()
    cfg, source = serve_config(["--config", str(other), "--max_new_tokens", "9"])
    assert cfg.judge == str(other / "judge")  # relative to the bundle, not to the working directory
    assert cfg.max_new_tokens == 9 and source == f"guard bundle {other}"
    yaml_file = tmp_path / "guard.yaml"
    yaml_file.write_text("served_model_name: from-yaml\n")
    cfg, source = serve_config(["--config", str(yaml_file)])
    assert cfg.served_model_name == "from-yaml" and cfg.model == GuardConfig.model and source == f"config {yaml_file}"


def test_serve_of_another_model_or_an_upstream_starts_from_the_defaults(builtin, tiny_lm_dir):
    # the bundle's pieces are trained on its model: --model and --upstream name an answering model of their own
    cfg, source = serve_config(["--model", str(tiny_lm_dir)])
    assert cfg == GuardConfig(model=str(tiny_lm_dir)) and source == "defaults and flags"
    cfg, _ = serve_config(["--upstream", "http://127.0.0.1:9/v1", "--upstream_model", "m"])
    assert cfg.served_model_name == GuardConfig.served_model_name


def test_serve_with_no_builtin_bundle_uses_the_old_defaults(no_builtin):
    assert bundle.builtin_bundle() is None
    cfg, source = serve_config([])
    assert cfg == GuardConfig() and source == "defaults and flags"
    assert serve_config(["--port", "0"])[0] == GuardConfig(port=0)


def test_demo_guard_is_the_builtin_bundle_with_explicit_pieces_over_it(builtin, tiny_lm_dir):
    gcfg, header = demo_guard_config(DemoConfig(model=str(tiny_lm_dir), max_new_tokens=5))
    assert gcfg.served_model_name == "bundle-guard" and (gcfg.port, gcfg.max_new_tokens) == (0, 5)
    assert header.startswith(f"builtin guard bundle {builtin}: model {tiny_lm_dir}, judge off, ACD off, screener off")
    gcfg, _ = demo_guard_config(DemoConfig(model=str(tiny_lm_dir), judge="my-judge", rewriter="my-rewriter"))
    assert (gcfg.judge, gcfg.rewriter, gcfg.served_model_name) == ("my-judge", "my-rewriter", "bundle-guard")


def test_demo_guard_without_the_builtin_bundle_is_the_untrained_one(no_builtin, tiny_lm_dir, tmp_path):
    gcfg, header = demo_guard_config(DemoConfig(model=str(tiny_lm_dir), acd_dir=str(tmp_path)))
    assert (gcfg.judge, gcfg.screener, gcfg.rewriter) == ("off", "toxicity", str(tiny_lm_dir))
    assert header.startswith("untrained guard (no builtin bundle built)") and "hand-written" in header
    other = write_bundle(tmp_path / "mine", tiny_lm_dir)
    gcfg, header = demo_guard_config(DemoConfig(model=str(tiny_lm_dir), guard=str(other)))
    assert gcfg.served_model_name == "bundle-guard" and header.startswith(f"guard {other}")


def test_demo_of_another_model_does_not_take_the_builtin_bundle(builtin):
    gcfg, header = demo_guard_config(DemoConfig(model="some/other-model"))
    assert gcfg.model == "some/other-model" and header.startswith("untrained guard (the builtin bundle is for")


def test_demo_counts_what_the_guard_did_with_each_kind():
    def trace(judge="allow", screen="pass", rewrite="not_needed"):
        return {"judge": {"decision": judge}, "screen": {"decision": screen}, "rewrite": {"decision": rewrite}}

    rows = [
        {"kind": "harmful", "outcome": outcome(trace(judge="block"), False)},
        {"kind": "harmful", "outcome": outcome(trace(), True)},  # answered with a refusal
        {"kind": "toxic", "outcome": outcome(trace(screen="flag", rewrite="rewritten"), False)},
        {"kind": "toxic", "outcome": outcome(trace(screen="flag", rewrite="withheld_after_rewrite"), False)},
        {"kind": "toxic", "outcome": outcome(trace(judge="block"), False)},  # the judge stops it before any answer
        {"kind": "benign", "outcome": outcome(trace(), False)},
        {"kind": "benign", "outcome": outcome(trace(judge="timeout_blocked"), False)},
    ]
    outcomes = ["blocked", "refused", "rewritten", "withheld", "blocked", "answered", "blocked"]
    assert [r["outcome"] for r in rows] == outcomes
    assert guard_counts(rows) == {
        "harmful": 2,
        "toxic": 3,
        "benign": 2,
        "harmful_stopped": 2,
        "toxic_stopped": 3,
        "benign_answered": 1,
    }


def test_the_committed_bundle_fits_in_git_and_names_only_files_inside_it():
    """What issue 17 asks of the shipped bundle: <= 4 MiB a file, <= 10 MiB in all, every piece a path inside the
    folder (no work files, no absolute paths), each trained on the bundle's model (load_guard_config checks it)."""
    import yaml

    folder = bundle.BUILTIN_BUNDLE
    if not (folder / "guard.yaml").exists():
        pytest.skip("the builtin bundle is not built in this checkout")
    sizes = [p.stat().st_size for p in folder.rglob("*") if p.is_file()]
    assert max(sizes) <= 4 * 2**20 and sum(sizes) <= 10 * 2**20
    assert not (folder / "work").exists() and not list(folder.rglob("model.safetensors"))
    values = yaml.safe_load((folder / "guard.yaml").read_text())
    for field in ("judge", "acd_safe_prompt", "acd_adv_prompt", "rewriter"):
        assert not str(values[field]).startswith("/") and (folder / values[field]).exists(), field
    cfg = bundle.load_guard_config(folder)
    assert cfg.model == "smollm2-135m-instruct" and cfg.judge == str(folder / "judge")
