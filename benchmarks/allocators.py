"""Allocator settings the augment memory benchmark compares (``--allocators``), applied in the
stage's process before it loads its models.

- ``fixed``: the stage's own, glibc's mmap threshold fixed at 4 MiB (tinybert/heap.py);
- ``default``: glibc's default, whose threshold drifts up as large blocks are freed;
- ``trim``: glibc's default, plus ``malloc_trim(0)`` after every chunk of examples.
"""
from __future__ import annotations

import ctypes

NAMES = ("fixed", "default", "trim")


def use(name: str) -> None:
    import tinybert.augment.stage as stage
    import tinybert.heap as heap

    if name == "fixed":
        return
    heap.fix_mmap_threshold = lambda *args, **kwargs: False
    if name == "trim":
        chunks, trim = stage.augmented_chunks, ctypes.CDLL(None).malloc_trim

        def trimmed(*args, **kwargs):
            for item in chunks(*args, **kwargs):
                yield item
                trim(0)  # the chunk's rows are written out: hand its freed pages back

        stage.augmented_chunks = trimmed
