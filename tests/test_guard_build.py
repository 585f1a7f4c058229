"""`detoxkit guard build`: stages skipped once done, a killed build resumed, the bundle assembled and calibrated."""

import json

import pytest
import yaml

from detoxkit.cli import main
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
