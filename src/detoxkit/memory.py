"""Process memory: the peak resident set so far, freed heap memory handed back to the operating system, and large
blocks kept out of the heap."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    import resource  # POSIX only: imported here so that the scoring code importing this module loads anywhere

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


@functools.lru_cache(maxsize=None)
def _libc_function(name: str, argtypes: tuple):
    """A glibc function returning int (malloc_trim, mallopt), or None where the C library has none (macOS, musl)."""
    lib = ctypes.util.find_library("c")
    fn = getattr(ctypes.CDLL(lib), name, None) if lib else None
    if fn is not None:
        fn.argtypes, fn.restype = list(argtypes), ctypes.c_int
    return fn


M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MAX_MMAP_THRESHOLD_MB = 32  # glibc refuses a threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit)


def fix_mmap_threshold(mb: int) -> bool:
    """From now on, serve every allocation of `mb` MiB or more with its own mmap, which free() unmaps at once (glibc
    mallopt M_MMAP_THRESHOLD, for the rest of the process); True where it was set. A no-op (False) for mb 0, where
    the C library has no mallopt (macOS, musl), and where MALLOC_MMAP_THRESHOLD_ in the environment already set it.

    Why: glibc's threshold starts at 128 KiB and rises to the size of every mmapped block freed (up to 32 MiB), so
    after the first fine-tuning step PyTorch's activation blocks of a few MiB come from the heap. Freed there, they
    stay resident and fragment the heap between forward and backward passes; release_freed_memory only trims what is
    free at the end of a pass, not the peak within it. A fixed threshold also turns the rising off. The activations
    of this loop's fine-tunes are MiB-sized blocks, so 1 MiB unmaps nearly all of them, while the many small tensors
    keep the heap's speed (benchmarks/adversarial_memory.py --scale fine_tunes measures the peak with and without)."""
    if mb <= 0 or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    mallopt = _libc_function("mallopt", (ctypes.c_int, ctypes.c_int))
    return bool(mallopt and mallopt(M_MMAP_THRESHOLD, mb << 20))


def release_freed_memory() -> None:
    """Hand the free pages of every malloc arena back to the OS (glibc malloc_trim(0)); a no-op elsewhere.

    Why: PyTorch on CPU takes activations from malloc, and glibc keeps a freed block below its mmap threshold (which
    grows up to 32 MiB as large blocks are freed) in its arenas instead of unmapping it. After a scoring pass or a
    fine-tune the process then stays near that pass's peak, and the next pass's activations pile on top of it. Called
    once at the end of each pass (not per batch: within a pass the freed blocks are reused anyway); it changes no
    number, only what stays resident. Dask's documentation on worker memory not released to the OS gives the same call;
    LD_PRELOADing jemalloc is the other cure, but it is not a pip dependency."""
    trim = _libc_function("malloc_trim", (ctypes.c_size_t,))
    if trim is not None:
        trim(0)
