"""`detoxkit guard build`: train every trained piece of the guard with the measured recipes, in order, into one
bundle folder, then calibrate it on validation prompts and write its card.

Stages (each a recipe run from its YAML, with the bundle's model, device, dtype and a folder under ``work/``):
judge (`adversarial run`), anchors (`acd anchors`), prompts (`acd tune`), rewriter (`sro train`), then calibrate
(`guard calibrate` on the assembled bundle) and card (CARD.md). A stage whose ``work/<stage>/STAGE_DONE.json``
exists is skipped; the training recipes resume from their own checkpoints, so a build killed at any point goes on
where it stopped when run again. A recipe set to "off" leaves its piece out of the bundle (e.g. no rewriter: a
flagged answer is withheld).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import DeviceArgs, Recipe, SeedArgs, arg, load_yaml, with_defaults
from ..errors import DetoxkitError
from .card import write_card
from .config import is_off

DONE = "STAGE_DONE.json"
RUNNING = "STAGE_RUNNING.json"  # a running stage's seconds so far (kept when it is killed)
RESERVED = "reserved.jsonl"  # the guard's validation + test prompts, kept out of the judge's data
SPLITS = ("validation", "test")
BUNDLE_STAGES = ("export", "calibrate")  # stages whose output is the bundle folder itself
CALIBRATED = ("judge_threshold", "screener_threshold", "acd_alpha")


@dataclass
@with_defaults(seed=0)
class GuardBuildConfig(SeedArgs, DeviceArgs):
    """detoxkit guard build --config configs/guard_build.yaml --output_dir DIR: train the judge, the ACD anchor set
    and soft prompts, and the SRO rewriter for one model with the measured recipes (each from its YAML), assemble
    them into a bundle (DIR/guard.yaml, paths relative to DIR), calibrate its thresholds and α on validation prompts,
    and write DIR/CARD.md. Resumable: run the same command again after a kill."""

    model: str = arg("smollm2-135m-instruct", "the model the guard is built for (every piece is trained on it)")
    output_dir: str = arg("runs/guard-bundle", "the bundle folder (work/ holds each stage's run)")
    judge_recipe: str = arg("configs/guard_judge.yaml", "adversarial run YAML for the judge, or off")
    anchors_recipe: str = arg("configs/acd_anchors.yaml", "acd anchors YAML, or off (then no ACD)")
    prompts_recipe: str = arg("configs/acd_tune.yaml", "acd tune YAML (its anchors come from the anchors stage)")
    rewriter_recipe: str = arg(
        "configs/sro_train.yaml",
        "sro train YAML for the rewriter, or off (exported at adapter_rank: exact for a LoRA of that rank, the "
        "truncated SVD of a full fine-tune's change otherwise, compared on validation by the export stage)",
    )
    work_dir: str = arg("", "each stage's run folder (default OUTPUT_DIR/work): checkpoints, logs, full weights")
    adapter_rank: int = arg(
        6, "rank of the judge's and the rewriter's LoRA adapters in the bundle (fp16): the size of the bundle"
    )
    export_n: int = arg(40, "validation items per kind on which the adapters are compared with the trained pieces")
    screener: str = arg("toxicity", "the answer screener (a detoxkit scorer name)")
    calibrate: bool = arg(True, "choose the thresholds and α on validation prompts (guard calibrate)")
    calibration_n: int = arg(40, "validation prompts per kind for calibration")
    max_over_refusal: float = arg(0.05, "calibration's operating point: benign over-refusal at most this")


@dataclass
class Stage:
    name: str
    run: Callable[[], dict]  # trains into its work folder; returns what the card says about it
    enabled: bool = True


class StageClock:
    """Seconds a stage has run over all its attempts. While it runs, a background thread writes the time so far to
    work/<stage>/STAGE_RUNNING.json every `every` seconds, so a killed attempt's time (to within `every`) is added
    to the next attempt's instead of being lost."""

    def __init__(self, folder: Path, every: float = 15.0):
        import threading

        self.path, self.every, self.stop = folder / RUNNING, every, threading.Event()
        self.earlier = json.loads(self.path.read_text())["seconds"] if self.path.exists() else 0.0
        self.t0 = time.time()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def seconds(self) -> float:
        return round(self.earlier + time.time() - self.t0, 1)

    def _beat(self) -> None:
        from ..runs import write_json

        while not self.stop.wait(self.every):
            write_json(self.path, {"seconds": self.seconds()})

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def run_stages(stages: list[Stage], work: Path, log=print) -> dict:
    """Each enabled stage in order, skipped when done; a stage is done once its STAGE_DONE.json is written. Its
    seconds count every attempt (StageClock)."""
    from ..runs import progress, write_json

    times = {}
    for stage in progress([s for s in stages if s.enabled], desc="guard build", unit="stage"):
        done = work / stage.name / DONE
        if done.exists():
            times[stage.name] = {**json.loads(done.read_text()), "skipped": True}
            log(f"guard build: {stage.name} already built ({times[stage.name]['seconds']:.0f} s), skipped")
            continue
        log(f"guard build: {stage.name} ...")
        with StageClock(work / stage.name) as clock:
            about = stage.run()
        record = {"seconds": clock.seconds(), **about}
        write_json(done, record)
        (work / stage.name / RUNNING).unlink(missing_ok=True)
        times[stage.name] = record
        log(f"guard build: {stage.name} done in {record['seconds']:.0f} s")
    return times


def _recipe_config(cls, path: str, **overrides):
    """A recipe's config from its YAML with the build's own fields set over it."""
    values = load_yaml(path, cls)
    return cls(**{**values, **{k: v for k, v in overrides.items() if k in cls.__dataclass_fields__}})


# stage -> (its recipe field, "module:Config", "module:function" that runs it, its command)
RECIPES = {
    "judge": ("judge_recipe", "adversarial.config:AdversarialRunConfig", "adversarial.loop:run", "adversarial run"),
    "anchors": ("anchors_recipe", "acd.config:AnchorsConfig", "acd.anchors:build_anchors", "acd anchors"),
    "prompts": ("prompts_recipe", "acd.config:TuneConfig", "acd.tune:tune", "acd tune"),
    "rewriter": ("rewriter_recipe", "sro.config:SroTrainConfig", "sro.train:train", "sro train"),
}


def _overrides(cfg: GuardBuildConfig, work: Path) -> dict[str, dict]:
    """What the build sets over each recipe's YAML: its model, its folder under work/, resuming, device, dtype."""
    common = dict(device=cfg.device, dtype=cfg.dtype, seed=cfg.seed, resume_from_checkpoint="latest")
    acd = str(work / "acd")
    return {
        "judge": dict(
            judge_model=cfg.model,
            attacker_model=cfg.model,
            output_dir=str(work / "judge"),
            reserved=str(work / RESERVED),
            **common,
        ),
        "anchors": dict(model=cfg.model, output_dir=acd, **common),
        "prompts": dict(model=cfg.model, anchors=str(work / "acd" / "anchors.jsonl"), output_dir=acd, **common),
        "rewriter": dict(model_name_or_path=cfg.model, output_dir=str(work / "sro"), **common),
    }


def _load(target: str):
    import importlib

    module, attr = target.split(":")
    return getattr(importlib.import_module(f"detoxkit.{module}"), attr)


def stages_for(cfg: GuardBuildConfig, work: Path) -> list[Stage]:
    overrides = _overrides(cfg, work)

    def stage(name: str) -> Stage:
        field, config, function, command = RECIPES[name]
        path = getattr(cfg, field)

        def run() -> dict:
            _load(function)(_recipe_config(_load(config), path, **overrides[name]))
            return {"recipe": path, "command": f"detoxkit {command} --config {path}"}

        enabled = not is_off(path) and (name != "prompts" or not is_off(cfg.anchors_recipe))
        return Stage(name, run, enabled)

    return [stage(name) for name in RECIPES]


def write_reserved(path: Path) -> int:
    """The guard's validation and test prompts (every builtin harmful and benign one), which the judge stage keeps
    out of its training data and its own splits (adversarial run --reserved)."""
    from ..runs import atomic_write_text, json_line
    from .evalsets import builtin_set

    rows = [{"prompt": r.prompt} for k in ("harmful", "benign") for s in SPLITS for r in builtin_set(k, s, 10**9)]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json_line(r) for r in rows))
    return len(rows)


def follow_bundle(work: Path, out: Path, model: str) -> None:
    """A work folder belongs to one model: another model's build there is refused (its trained stages would be
    skipped as done). The export and calibrate stages write into the bundle, not into work/: when the same work
    folder now builds a different bundle folder, they run again (the trained pieces are reused)."""
    from ..runs import write_json

    marker = work / "BUNDLE.json"
    target = str(out.resolve())
    if marker.exists():
        built = json.loads(marker.read_text())
        if built.get("model", model) != model:
            raise DetoxkitError(
                f"--work_dir {work} holds the stages of a build for {built['model']!r}, not {model!r}: "
                "give this model its own --work_dir"
            )
        if built.get("output_dir") != target:
            for stage in BUNDLE_STAGES:
                (work / stage / DONE).unlink(missing_ok=True)
    write_json(marker, {"output_dir": target, "model": model})


def export_stage(cfg: GuardBuildConfig, work: Path, out: Path) -> Stage:
    """The trained pieces into the bundle: judge/ and rewriter/ as rank-r LoRA adapters, acd/ the soft prompts;
    each adapter compared with its trained piece on validation data (guard.export)."""
    from . import export

    def run() -> dict:
        about, dev = {}, dict(dtype=cfg.dtype, device=cfg.device)
        if not is_off(cfg.judge_recipe):
            about["judge"] = export.export_judge(
                work / "judge" / "judge", out / "judge", cfg.adapter_rank, cfg.export_n, cfg.seed, **dev
            )
        if not is_off(cfg.anchors_recipe):
            about["prompts"] = export.copy_prompts(work / "acd", out / "acd")
        if not is_off(cfg.rewriter_recipe):
            about["rewriter"] = export.export_rewriter(
                work / "sro" / "final", out / "rewriter", cfg.adapter_rank, cfg.export_n, **dev
            )
        return about

    return Stage("export", run)


def bundle_yaml(cfg: GuardBuildConfig) -> dict:
    """The bundle's guard.yaml before calibration: every trained piece by its path inside the bundle."""
    acd = not is_off(cfg.anchors_recipe)
    return {
        "model": cfg.model,
        "judge": "off" if is_off(cfg.judge_recipe) else "judge",
        "acd_safe_prompt": "acd/safe_prompt.safetensors" if acd else "off",
        "acd_adv_prompt": "acd/adv_prompt.safetensors" if acd else "off",
        "screener": cfg.screener,
        "rewriter": "off" if is_off(cfg.rewriter_recipe) else "rewriter",
    }


def _write_yaml(path: Path, values: dict, comment: str) -> None:
    import yaml

    from ..runs import atomic_write_text

    atomic_write_text(path, comment + yaml.safe_dump(values, sort_keys=False, allow_unicode=True))


def calibrate_bundle(cfg: GuardBuildConfig, out: Path) -> dict:
    """guard calibrate on the bundle (its guard.yaml as trained); returns the chosen thresholds and α."""
    from .calibrate import GuardCalibrateConfig
    from .calibrate import run as calibrate

    result = calibrate(
        GuardCalibrateConfig(
            guard=[str(out)],
            n=cfg.calibration_n,
            max_over_refusal=cfg.max_over_refusal,
            output_dir=str(out / "calibration"),
            device=cfg.device,
            dtype=cfg.dtype,
            seed=cfg.seed,
        )
    )
    return {"chosen": {k: result["chosen"][k] for k in CALIBRATED}}


def run(cfg: GuardBuildConfig) -> dict:
    needed = ["judge_recipe", "anchors_recipe", "rewriter_recipe"]
    needed += ["prompts_recipe"] if not is_off(cfg.anchors_recipe) else []
    for name in needed:
        value = getattr(cfg, name)
        if not is_off(value) and not Path(value).is_file():
            raise DetoxkitError(f"{name}: {value}: no such recipe YAML")
    out = Path(cfg.output_dir)
    work = Path(cfg.work_dir) if cfg.work_dir else out / "work"
    if not is_off(cfg.judge_recipe):
        write_reserved(work / RESERVED)
    follow_bundle(work, out, cfg.model)
    times = run_stages([*stages_for(cfg, work), export_stage(cfg, work, out)], work)
    values = bundle_yaml(cfg)
    _write_yaml(out / "guard.yaml", values, "# detoxkit serve --config guard.yaml\n")
    if cfg.calibrate:
        times.update(run_stages([Stage("calibrate", lambda: calibrate_bundle(cfg, out))], work))
        (out / "calibration" / "guard.yaml").unlink(missing_ok=True)  # absolute paths; the bundle's is calibrated
        chosen = times["calibrate"]["chosen"]
        values.update({k: chosen[k] for k in CALIBRATED if chosen.get(k) is not None})
        _write_yaml(out / "guard.yaml", values, "# detoxkit serve --config guard.yaml (calibrated: calibration/)\n")
    write_card(cfg, out, times)
    return {"bundle": str(out), "stages": times, "seconds": sum(t["seconds"] for t in times.values())}


def summary(cfg: GuardBuildConfig, r: dict) -> str:
    parts = ", ".join(
        f"{k} {v['seconds']:.0f} s" + (" (skipped)" if v.get("skipped") else "") for k, v in r["stages"].items()
    )
    return f"guard build: {parts}; {r['seconds']:.0f} s in all -> {r['bundle']}/guard.yaml"


BUILD = Recipe(GuardBuildConfig, run, summary)
