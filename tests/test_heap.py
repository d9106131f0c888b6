import platform

import pytest

from tinybert.heap import fix_mmap_threshold


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_mmap_threshold_is_set_on_glibc():
    assert fix_mmap_threshold(4 << 20)
    assert fix_mmap_threshold(4 << 20)  # again: idempotent


def test_without_mallopt_nothing_is_changed(monkeypatch):
    class NoMallopt:  # a C library without it (macOS, musl)
        def __init__(self, name):
            pass

    monkeypatch.setattr("tinybert.heap.ctypes.CDLL", NoMallopt)
    assert fix_mmap_threshold() is False
