"""A sharded stage's sub-flow (reading the source, publishing the output) is retried as its
stage's retry count says, except on bad input, which would fail the same way again."""
from __future__ import annotations

import pytest

from flows import sharded
from tinybert.errors import InputError
from tinybert.stages import BY_NAME


class FlakySubflow:
    """Stands in for the Prefect sub-flow: raises the given errors in turn, then returns 3 shards."""

    def __init__(self, *errors: Exception):
        self.errors, self.calls = list(errors), 0

    def with_options(self, **_):
        return self

    def __call__(self, name, params):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return 3


def test_a_transient_failure_is_retried_and_the_stage_completes(monkeypatch, capsys):
    subflow = FlakySubflow(OSError("disk busy"))
    monkeypatch.setattr(sharded, "sharded_stage", subflow)
    assert BY_NAME["prepare-corpus"].retries >= 1
    assert sharded.run_sharded("prepare-corpus", "params.yaml", "threads", 2, None, retry_delay_s=0) == 3
    assert subflow.calls == 2
    assert "[prepare-corpus] failed: disk busy; retry 1 of" in capsys.readouterr().err


def test_retries_stop_at_the_stages_count(monkeypatch):
    retries = BY_NAME["augment"].retries
    subflow = FlakySubflow(*(OSError(f"failure {i}") for i in range(retries + 1)))
    monkeypatch.setattr(sharded, "sharded_stage", subflow)
    with pytest.raises(OSError, match=f"failure {retries}"):
        sharded.run_sharded("augment", "params.yaml", "threads", 2, None, retry_delay_s=0)
    assert subflow.calls == retries + 1


def test_bad_input_is_not_retried(monkeypatch):
    subflow = FlakySubflow(InputError("wiki.json: not JSON (line 3)"))
    monkeypatch.setattr(sharded, "sharded_stage", subflow)
    with pytest.raises(InputError, match="not JSON"):
        sharded.run_sharded("prepare-corpus", "params.yaml", "threads", 2, None, retry_delay_s=0)
    assert subflow.calls == 1
