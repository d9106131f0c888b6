"""Where training runs: a precision this machine would only emulate is said out loud, once."""
from __future__ import annotations

import pytest
import torch

from tinybert import runtime
from tinybert.runtime import Runtime


@pytest.fixture
def cpu_bf16_units(monkeypatch):
    """Pretend the CPU has, or lacks, bf16 units; each test starts with nothing warned yet."""
    def pretend(present: bool) -> None:
        monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: present)
    runtime.warn_if_bf16_is_emulated.cache_clear()
    yield pretend
    runtime.warn_if_bf16_is_emulated.cache_clear()


def test_bf16_on_a_cpu_that_would_emulate_it_warns_once_in_one_line(cpu_bf16_units, capsys):
    cpu_bf16_units(False)
    for _ in range(2):  # a stage that trains twice (prediction step, then the head on labels)
        assert Runtime.create("cpu", "bf16").precision == "bf16"  # legal, only slow: it goes on
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("warning: precision bf16 on a CPU without bf16 units") and "fp32" in lines[0]


@pytest.mark.parametrize("present, precision", [(True, "bf16"), (False, "fp32")])
def test_no_warning_where_bf16_is_native_or_not_asked_for(cpu_bf16_units, capsys, present, precision):
    cpu_bf16_units(present)
    Runtime.create("cpu", precision)
    assert capsys.readouterr().err == ""


def test_the_bf16_probe_answers_on_this_machine():
    assert isinstance(runtime.cpu_has_bf16_units(), bool)
    assert torch.cpu._is_avx512_bf16_supported() in (True, False)  # the private probes it relies on still exist
