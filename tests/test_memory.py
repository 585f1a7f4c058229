"""Process memory: freed heap pages go back to the OS after each scoring, generating and fine-tuning pass, and
large blocks, with a fixed mmap threshold, as soon as they are freed."""

import ctypes
import ctypes.util
import os
import subprocess
import sys

import pytest
import torch

from detoxkit.memory import _libc_function, fix_mmap_threshold, release_freed_memory


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(
    _libc_function("malloc_trim", (ctypes.c_size_t,)) is None, reason="the C library has no malloc_trim (not glibc)"
)
def test_release_hands_freed_heap_blocks_back_to_the_os():
    """Blocks below glibc's mmap threshold stay resident after free() while a live block above them pins the heap:
    the pattern a pass's activations leave behind. release_freed_memory returns their pages."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size, n = 64 * 1024, 2400  # 150 MiB in 64 KiB blocks, each below the 128 KiB default mmap threshold
    blocks = [libc.malloc(size) for _ in range(n)]
    for b in blocks:
        ctypes.memset(b, 1, size)  # touch every page
    pin = libc.malloc(size)
    ctypes.memset(pin, 1, size)
    for b in blocks:
        libc.free(b)
    held = _rss_mb()
    release_freed_memory()
    released = _rss_mb()
    libc.free(pin)
    assert held - released > 100, (held, released)


def test_scoring_generating_and_fine_tuning_release_their_memory(tiny_lm_dir, monkeypatch):
    from detoxkit.adversarial.judge import Judge
    from detoxkit.lm.generate import generate_ids

    calls = []
    for module in ("detoxkit.lm.score", "detoxkit.lm.generate", "detoxkit.memory"):
        monkeypatch.setattr(f"{module}.release_freed_memory", lambda: calls.append(1))
    torch.manual_seed(0)
    judge = Judge.load(str(tiny_lm_dir), train_mode="lora", lora_r=4, lora_alpha=8)
    judge.predict_proba(["a", "b c"])
    assert len(calls) == 1
    judge.finetune(["a", "b c"], [1, 0], epochs=1, batch_size=2)
    assert len(calls) == 2
    with judge.using() as model:
        generate_ids(model, judge.tokenizer, [[1, 2, 3]], max_new_tokens=2)
    assert len(calls) == 3


def test_the_module_imports_where_there_is_no_resource_module(monkeypatch):
    """Scoring and generation import detoxkit.memory, so it must load where `resource` (POSIX only) is missing."""
    import importlib
    import sys

    import detoxkit.memory

    monkeypatch.setitem(sys.modules, "resource", None)  # `import resource` now raises ImportError
    try:
        importlib.reload(detoxkit.memory).release_freed_memory()
    finally:
        monkeypatch.undo()
        importlib.reload(detoxkit.memory)


# Frees 40 blocks of 4 MiB under a live block that pins the heap, after an 8 MiB block freed has raised glibc's
# threshold to 8 MiB (the pattern a fine-tune's activations make); prints how much of the resident set the free gave
# back. argv[1]: the fixed threshold in MiB, 0 for glibc's own.
_FREE_BLOCKS = """
import ctypes, ctypes.util, sys
from detoxkit.memory import fix_mmap_threshold
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
fix_mmap_threshold(int(sys.argv[1]))
libc.free(libc.malloc(8 << 20))
blocks = [libc.malloc(4 << 20) for _ in range(40)]
for b in blocks:
    ctypes.memset(b, 1, 4 << 20)
pin = libc.malloc(64 << 10)
ctypes.memset(pin, 1, 64 << 10)
held = rss()
for b in blocks:
    libc.free(b)
print(held - rss())
"""


def _freed_mb(threshold_mb: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run = subprocess.run([sys.executable, "-c", _FREE_BLOCKS, str(threshold_mb)], capture_output=True, env=env)
    assert run.returncode == 0, run.stderr.decode()
    return float(run.stdout)


@pytest.mark.skipif(_libc_function("mallopt", (ctypes.c_int, ctypes.c_int)) is None, reason="no mallopt (not glibc)")
def test_a_fixed_mmap_threshold_returns_freed_large_blocks_at_once():
    """glibc's own threshold has risen past the blocks, so freed they stay in the heap; with it fixed at 1 MiB each
    block is its own map, unmapped by free()."""
    assert _freed_mb(0) < 20
    assert _freed_mb(1) > 140


def test_the_mmap_threshold_is_left_alone_when_off_or_set_by_the_environment(monkeypatch):
    assert fix_mmap_threshold(0) is False
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert fix_mmap_threshold(1) is False
