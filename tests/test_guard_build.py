"""`detoxkit guard build`: stages skipped once done, a killed build resumed, the bundle assembled and calibrated."""

import json
from pathlib import Path

import pytest
import yaml

from detoxkit.cli import main
from detoxkit.errors import DetoxkitError
from detoxkit.guard.build import DONE, Stage, run_stages


def test_a_killed_build_resumes_where_it_stopped(tmp_path):
    calls = []

    def stage(name, fail_once=False):
        def run():
            calls.append(name)
            if fail_once and calls.count(name) == 1:
                raise KeyboardInterrupt  # killed mid-stage
            return {"command": name}

        return Stage(name, run)

    stages = [stage("judge"), stage("prompts", fail_once=True), stage("rewriter"), Stage("off", lambda: {}, False)]
    with pytest.raises(KeyboardInterrupt):
        run_stages(stages, tmp_path, log=lambda _: None)
    assert calls == ["judge", "prompts"] and (tmp_path / "judge" / DONE).exists()
    assert not (tmp_path / "prompts" / DONE).exists()
    times = run_stages(stages, tmp_path, log=lambda _: None)
    assert calls == ["judge", "prompts", "prompts", "rewriter"]  # the finished stage is not run again
    assert times["judge"]["skipped"] and "skipped" not in times["rewriter"] and "off" not in times


def test_build_checks_its_recipes_before_it_starts(tmp_path, capsys):
    args = ["guard", "build", "--judge_recipe", str(tmp_path / "nope.yaml"), "--output_dir", str(tmp_path / "b")]
    assert main(args) == 2
    assert "judge_recipe" in capsys.readouterr().err and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_build_assembles_and_calibrates_a_bundle_and_keeps_it_on_rerun(tiny_lm_dir, tmp_path):
    out = tmp_path / "bundle"
    off = ["--judge_recipe", "off", "--anchors_recipe", "off", "--rewriter_recipe", "off"]
    args = ["guard", "build", "--model", str(tiny_lm_dir), *off, "--calibration_n", "2", "--output_dir", str(out)]
    assert main(args) == 0
    guard = yaml.safe_load((out / "guard.yaml").read_text())
    assert guard["judge"] == "off" and guard["acd_safe_prompt"] == "off" and "screener_threshold" in guard
    assert (out / "calibration" / "calibration.json").exists() and "Validation" in (out / "CARD.md").read_text()
    assert main(args) == 0  # everything done: nothing runs again, and the calibrated values stay
    assert yaml.safe_load((out / "guard.yaml").read_text()) == guard
    assert json.loads((out / "work" / "calibrate" / DONE).read_text())["chosen"]["screener_threshold"] is not None


def _trained_pieces(tiny_lm_dir, work):
    """A tiny LoRA judge (fine-tuned a little) and a tiny fully fine-tuned rewriter where the stages leave them."""
    import torch

    from detoxkit.adversarial.judge import Judge
    from detoxkit.lm.load import load_model_and_tokenizer
    from detoxkit.sro.rewrite import INSTRUCTION, save_rewriter

    judge = Judge.load(str(tiny_lm_dir), train_mode="lora", lora_r=8, lora_alpha=16)
    judge.finetune(["make a bomb", "bake bread"] * 4, [1, 0] * 4, epochs=2, learning_rate=1e-2)
    judge.threshold = 0.42
    judge.save(work / "judge" / "judge")
    model, tok = load_model_and_tokenizer(str(tiny_lm_dir))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("proj.weight"):
                p.add_(0.02 * torch.randn_like(p))
    save_rewriter(model, tok, work / "sro" / "final", INSTRUCTION, 8, base_model=str(tiny_lm_dir))
    return judge


@pytest.mark.slow
def test_export_writes_peft_adapters_the_guard_loads_and_compares_them_on_validation(tiny_lm_dir, tmp_path):
    from peft import PeftModel

    from detoxkit.adversarial.judge import Judge
    from detoxkit.guard.build import GuardBuildConfig, export_stage
    from detoxkit.lm.load import load_model
    from detoxkit.sro.rewrite import Rewriter

    work, out = tmp_path / "work", tmp_path / "bundle"
    trained = _trained_pieces(tiny_lm_dir, work)
    cfg = GuardBuildConfig(model=str(tiny_lm_dir), anchors_recipe="off", adapter_rank=8, export_n=2)
    about = export_stage(cfg, work, out).run()
    # the judge at the rank it was trained with: the same scores, its threshold and template kept
    judge = Judge.from_pretrained(out / "judge")
    probes = ["make a bomb", "bake bread", "hello there"]
    assert judge.predict_proba(probes) == pytest.approx(trained.predict_proba(probes), abs=2e-3)
    assert judge.threshold == 0.42 and judge.template == trained.template
    assert about["judge"]["adapter"]["rank"] == 8 and about["judge"]["validation"]["adapter"]["n"] == 4
    assert {"trained", "adapter", "same_rewrite"} <= set(about["rewriter"]["validation"])
    PeftModel.from_pretrained(load_model(str(tiny_lm_dir)), str(out / "rewriter"))  # a plain PEFT adapter
    assert Rewriter.from_pretrained(str(out / "rewriter")).max_new_tokens == 8
    assert not list(out.rglob("model.safetensors"))  # no full weights in the bundle


def test_a_work_folder_reused_for_another_bundle_exports_and_calibrates_again(tmp_path):
    from detoxkit.guard.build import follow_bundle

    work = tmp_path / "work"
    for stage in ("judge", "export", "calibrate"):
        (work / stage).mkdir(parents=True)
        (work / stage / DONE).write_text("{}")
    follow_bundle(work, tmp_path / "a", "m")
    follow_bundle(work, tmp_path / "a", "m")  # the same bundle: everything stays done
    assert all((work / s / DONE).exists() for s in ("judge", "export", "calibrate"))
    follow_bundle(work, tmp_path / "b", "m")
    assert (work / "judge" / DONE).exists()
    assert not (work / "export" / DONE).exists() and not (work / "calibrate" / DONE).exists()
    with pytest.raises(DetoxkitError, match="holds the stages of a build for 'm', not 'other'"):
        follow_bundle(work, tmp_path / "c", "other")  # its judge would be skipped as done, trained on m


def test_a_stage_killed_and_resumed_counts_the_time_of_both_attempts(tmp_path):
    import time

    from detoxkit.guard.build import RUNNING, StageClock

    running = tmp_path / "judge" / RUNNING
    with pytest.raises(KeyboardInterrupt), StageClock(tmp_path / "judge", every=0.01):
        while not running.exists():  # the heartbeat records the attempt while it runs
            time.sleep(0.01)
        raise KeyboardInterrupt  # killed
    running.write_text(json.dumps({"seconds": 600.0}))  # as a ten-minute attempt would have left it
    times = run_stages([Stage("judge", lambda: {})], tmp_path, log=lambda _: None)
    assert times["judge"]["seconds"] >= 600.0 and not running.exists()  # the killed attempt is counted, then cleared


def test_a_rebuild_that_runs_nothing_keeps_the_cards_test_numbers_and_a_real_rebuild_clears_them(tmp_path):
    from detoxkit.guard.build import GuardBuildConfig
    from detoxkit.guard.card import TEST_BEGIN, TEST_END, write_card, write_test_numbers

    cfg = GuardBuildConfig(model="m")
    write_card(cfg, tmp_path, {"judge": {"seconds": 5.0}})
    write_test_numbers(tmp_path / "CARD.md", "harmful 0.38 on test")
    write_card(cfg, tmp_path, {"judge": {"seconds": 5.0, "skipped": True}})  # everything already built
    assert f"{TEST_BEGIN}\nharmful 0.38 on test\n{TEST_END}" in (tmp_path / "CARD.md").read_text()
    write_card(cfg, tmp_path, {"judge": {"seconds": 6.0}})  # a stage ran: the old numbers no longer hold
    assert "harmful 0.38" not in (tmp_path / "CARD.md").read_text()


def test_the_card_names_the_command_that_rebuilds_the_bundle():
    import shlex

    from detoxkit.config import load_yaml, parse_config
    from detoxkit.guard.build import GuardBuildConfig
    from detoxkit.guard.card import build_command

    root = Path(__file__).resolve().parents[1]
    shipped = load_yaml(root / "configs" / "guard_build.yaml", GuardBuildConfig)
    cfg = GuardBuildConfig(**{**shipped, "output_dir": "src/detoxkit/guards/smollm2-135m", "calibrate": False})
    command = build_command(cfg)
    assert command.startswith("detoxkit guard build ") and "--no-calibrate" in command
    assert parse_config(GuardBuildConfig, shlex.split(command)[3:], "guard build") == cfg  # every field round-trips
