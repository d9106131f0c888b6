"""The Prefect flow runs the same stages and leaves the workspace as `dvc repro` does."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.conftest import make_tiny_repo, run
from tinybert.stages import STAGES

pytestmark = pytest.mark.slow

# Throughput is measured, so the evaluation folder differs between any two runs.
TIMED = {"data/evaluation"}


def outs(lock_path) -> dict[str, str]:
    lock = yaml.safe_load(open(lock_path))["stages"]
    return {o["path"]: o["md5"] for s in lock.values() for o in s["outs"]}


@pytest.fixture(scope="module")
def flow_repo(tmp_path_factory, built_repo):
    repo = make_tiny_repo(tmp_path_factory.mktemp("flow") / "repo")
    result = run(repo, "python", "-m", "flows.pipeline")
    (repo.parent / "flow.log").write_text(result.stdout + result.stderr)
    return repo


def test_flow_runs_every_stage_and_dvc_status_is_clean_afterwards(flow_repo):
    log = (flow_repo.parent / "flow.log").read_text()
    for stage in STAGES:
        if stage.sharded:  # a sub-flow whose shards are mapped tasks
            assert f"[{stage.name}] shards " in log and "Task run 'shard-0' - Finished in state Completed" in log
        else:
            assert f"Task run '{stage.name}' - Finished in state Completed" in log
    assert "up to date" in run(flow_repo, "dvc", "status").stdout


def test_flow_and_dvc_repro_produce_the_same_artifacts(flow_repo, built_repo):
    from_dvc = outs(built_repo.parent / "dvc.lock.first")
    from_flow = outs(flow_repo / "dvc.lock")
    assert from_flow.keys() == from_dvc.keys() == {out for s in STAGES for out in s.outs.values()}
    for path in from_dvc.keys() - TIMED:
        assert from_flow[path] == from_dvc[path], path
    flow_metrics = json.loads((flow_repo / "data/evaluation/metrics.json").read_text())
    assert flow_metrics["student"]["dev"]["accuracy"] >= 0.0
    assert "up to date" in run(flow_repo, "dvc", "status").stdout


def test_flow_run_again_skips_every_stage_as_up_to_date(flow_repo):
    result = run(flow_repo, "python", "-m", "flows.pipeline")
    log = result.stdout + result.stderr
    for stage in STAGES:
        if stage.sharded:
            assert f"stage {stage.name} is up to date (dvc status): skipped" in log
        else:
            assert f"Task run '{stage.name}' - Finished in state Cached" in log
    assert "shard-0" not in log
