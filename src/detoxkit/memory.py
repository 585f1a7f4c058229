"""Process memory: the peak resident set so far, and freed heap memory handed back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    import resource  # POSIX only: imported here so that the scoring code importing this module loads anywhere

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (macOS, musl)."""
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> None:
    """Hand the free pages of every malloc arena back to the OS (glibc malloc_trim(0)); a no-op elsewhere.

    Why: PyTorch on CPU takes activations from malloc, and glibc keeps a freed block below its mmap threshold (which
    grows up to 32 MiB as large blocks are freed) in its arenas instead of unmapping it. After a scoring pass or a
    fine-tune the process then stays near that pass's peak, and the next pass's activations pile on top of it. Called
    once at the end of each pass (not per batch: within a pass the freed blocks are reused anyway); it changes no
    number, only what stays resident. Dask's documentation on worker memory not released to the OS gives the same call;
    LD_PRELOADing jemalloc is the other cure, but it is not a pip dependency."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
