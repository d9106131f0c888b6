"""A fixed glibc mmap threshold, so a long augment run's memory does not creep up.

glibc serves an allocation from the heap when it is below the mmap threshold, and raises that
threshold (up to 32 MiB) each time a larger mmapped block is freed. Torch allocates tensors of
ever-changing sizes (each MLM batch has its own shape) through malloc, so after a while blocks of
several MiB come from the heap, where freed space fragments and stays with the process. Measured
on the augment stage (2 cores, shards of 250, batch 128): peak RSS 1,422 MB for 500 sentences and
1,704 MB for 2,000 with glibc's default; 995 MB and 1,009 MB with the threshold fixed at 4 MiB
(965 and 971 MB at 1 MiB). The price is time: every large block is a fresh mmap, and those runs
took about 12% longer. The setting holds for the rest of the process (mallopt has no undo), so
the augment stage sets it when it loads its models, not at import.
"""
from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h
DEFAULT_THRESHOLD = 4 << 20  # bytes: larger blocks are mmapped and go back to the system when freed


def fix_mmap_threshold(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Set glibc's mmap threshold to ``threshold`` bytes, which also stops its upward drift.

    Returns False, changing nothing, where the C library is not glibc (macOS, musl)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter is linked with
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1
