import platform

import pytest

from tinybert.heap import fix_mmap_threshold


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_mmap_threshold_is_set_on_glibc():
    assert fix_mmap_threshold(4 << 20)
    assert fix_mmap_threshold(4 << 20)  # again: idempotent
