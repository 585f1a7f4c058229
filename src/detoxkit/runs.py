"""Run plumbing shared by every recipe: seeding, the output directory, atomic writes, checkpoints.

A run directory holds ``config.yaml`` (the resolved config), ``checkpoint-<step>/`` folders,
``metrics.json`` and JSONL logs. Everything is written to a temporary name and renamed, so an
interrupted or failed run never leaves a half-written file where a finished one is expected.
Checkpoints hold tensors as safetensors and the rest as JSON; optimizer state is read back with
``torch.load(weights_only=True)``, which never unpickles arbitrary objects.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        _public(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | Path):
    """Yield a temporary folder beside `final`; on success it replaces `final` in one rename, on error it is removed.

    A reader never sees a half-written model, checkpoint or rewriter folder."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _public(path) -> None:
    """mkstemp creates 0600 files; give the final file the permissions a plain open() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def update_json(path: str | Path, sections: dict, command: list[str] | None = None) -> dict:
    """Set top-level keys of a JSON results file (created if missing), keep the others, write it atomically.

    With `command` (e.g. sys.argv), each key written gets a "provenance" entry {command, written (UTC)}: a file
    assembled by several runs, one section at a time, then says which run wrote which part."""
    import time

    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(sections)
    if command is not None:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        data.setdefault("provenance", {}).update(
            {k: {"command": " ".join(command), "written": stamp} for k in sections}
        )
    write_json(path, data)
    return data


def json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def json_line(row: dict) -> str:
    """One JSONL row (UTF-8 kept as text, numpy/torch scalars and paths as plain values)."""
    return json.dumps(row, ensure_ascii=False, default=json_default) + "\n"


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Append rows to a JSONL log; each row is flushed so a killed run loses at most the row in flight."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json_line(row))
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                # A run killed mid-write leaves at most one truncated last line; drop it.
                break
    return rows


def save_config(cfg, path: str | Path) -> None:
    """Write a resolved config dataclass as YAML (atomically): what the run was asked to do."""
    import dataclasses

    import yaml

    atomic_write_text(path, yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))


def prepare_output_dir(cfg, output_dir: str | Path | None = None) -> Path:
    """Create the run folder and write the resolved config into it."""
    out = Path(output_dir or cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    return out


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_resume(output_dir: str | Path, resume_from_checkpoint: str | None) -> Path | None:
    """``None``/"" -> no resume; "latest" or "true" -> newest checkpoint in output_dir (if any); else a path."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint.lower() in ("latest", "true"):
        ckpts = list_checkpoints(output_dir)
        return ckpts[-1] if ckpts else None
    path = Path(resume_from_checkpoint)
    if not (path / "trainer_state.json").exists():
        from .errors import DetoxkitError

        raise DetoxkitError(f"{path}: not a detoxkit checkpoint (no trainer_state.json)")
    return path


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    tensors: dict[str, dict[str, Any]],
    state: dict[str, Any],
    optimizers: dict[str, Any] | None = None,
    keep_last: int = 2,
) -> Path:
    """Save ``checkpoint-<step>/`` atomically.

    tensors: {file stem: {name: tensor}} saved as ``<stem>.safetensors``;
    state: JSON-able trainer state (step, rng is added here); optimizers: {name: optimizer}.
    """
    import torch
    from safetensors.torch import save_file

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"checkpoint-{step}"
    with atomic_dir(final) as tmp:
        for stem, named in tensors.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in named.items()}, str(tmp / f"{stem}.safetensors"))
        for name, opt in (optimizers or {}).items():
            torch.save(opt.state_dict(), tmp / f"{name}.optimizer.pt")
        torch.save({"torch": torch.get_rng_state(), "python": _py_rng_tensor()}, tmp / "rng.pt")
        write_json(tmp / "trainer_state.json", {"step": step, **state})
    for old in list_checkpoints(out)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _py_rng_tensor():
    import torch

    # Python's RNG state as a tensor so it round-trips through weights_only loading.
    version, internal, gauss = random.getstate()
    return torch.tensor(list(internal), dtype=torch.int64)


def load_checkpoint(path: str | Path, optimizers: dict[str, Any] | None = None) -> tuple[dict[str, dict], dict]:
    """Load a checkpoint written by :func:`save_checkpoint`; restores RNG and optimizer states in place."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    tensors = {p.name[: -len(".safetensors")]: load_file(str(p)) for p in path.glob("*.safetensors")}
    for name, opt in (optimizers or {}).items():
        opt.load_state_dict(torch.load(path / f"{name}.optimizer.pt", weights_only=True))
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    random.setstate((3, tuple(int(x) for x in rng["python"].tolist()), None))
    state = json.loads((path / "trainer_state.json").read_text())
    return tensors, state


def progress(iterable=None, disable: bool = False, **kwargs):
    """A tqdm progress bar; ``DETOXKIT_PROGRESS=0`` turns every bar off (tests, logs)."""
    from tqdm.auto import tqdm

    disable = disable or os.environ.get("DETOXKIT_PROGRESS", "1") == "0"
    return tqdm(iterable, disable=disable, dynamic_ncols=True, **kwargs)
