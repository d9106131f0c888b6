"""The Prefect flow runs the same stages and leaves the workspace as `dvc repro` does."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from tests.integration.conftest import make_tiny_repo, run
from tinybert.stages import STAGES

pytestmark = pytest.mark.slow

# Throughput is measured, so the evaluation folder differs between any two runs.
TIMED = {"data/evaluation"}
# Model folders, and the teacher's logits (a forward pass): equal, or equal up to float noise
# (see below). Every other output must match exactly.
COMPUTED = {"data/mlm", "data/teacher", "data/general_student", "data/student", "data/teacher_logits"}


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


def cached_files(repo, dir_md5: str) -> dict:
    """relpath -> file in the repository's DVC cache, for a folder output's .dir hash."""
    def blob(md5):
        return repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]

    return {e["relpath"]: (e["md5"], blob(e["md5"])) for e in json.loads(blob(dir_md5).read_text())}


def assert_same_up_to_float_noise(path, dvc_repo, dvc_md5, flow_repo, flow_md5):
    """Trained weights and a model's outputs may differ in their last bits between two processes
    under different CPU load (threading libraries); everything else must be the same, the weights
    within a few learning-rate steps (Adam turns a sign change of a near-zero gradient into a full
    step) and the outputs of a model within what such weights give."""
    a, b = cached_files(dvc_repo, dvc_md5), cached_files(flow_repo, flow_md5)
    assert a.keys() == b.keys(), path
    for name, (md5, file) in a.items():
        if md5 == b[name][0] or name.endswith((".csv", ".json")):  # logs: the same run, its last bits
            continue
        assert name.endswith((".safetensors", ".parquet")), f"{path}/{name} differs"
        x, y = (tensors(f, name) for f in (file, b[name][1]))
        assert x.keys() == y.keys()
        for key in x:
            assert torch.allclose(x[key], y[key], rtol=1e-3, atol=2e-3), f"{path}/{name}: {key}"


def tensors(file, name: str) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, or a parquet file's columns (a list column is a matrix);
    ``name`` is the file's name in its folder (the cache names it by its hash)."""
    import pyarrow.parquet as pq
    from safetensors.torch import load_file

    if name.endswith(".safetensors"):
        return load_file(file)
    table = pq.read_table(file)
    return {column: torch.tensor(table.column(column).to_pylist(), dtype=torch.float64) for column in table.column_names}


def test_flow_and_dvc_repro_produce_the_same_artifacts(flow_repo, built_repo):
    from_dvc = outs(built_repo.parent / "dvc.lock.first")
    from_flow = outs(flow_repo / "dvc.lock")
    assert from_flow.keys() == from_dvc.keys() == {out for s in STAGES for out in s.outs.values()}
    for path in sorted(from_dvc.keys() - TIMED):
        if from_flow[path] != from_dvc[path] and path in COMPUTED:
            assert_same_up_to_float_noise(path, built_repo, from_dvc[path], flow_repo, from_flow[path])
        else:
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


def test_a_parameter_set_back_restores_the_earlier_run_from_dvcs_run_cache_as_dvc_repro_does(flow_repo):
    def set_repeats(value):
        params = yaml.safe_load((flow_repo / "params.yaml").read_text())
        params["evaluate"]["throughput_repeats"] = value
        (flow_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    before = (flow_repo / "data/evaluation/metrics.json").read_bytes()  # holds a measured throughput
    set_repeats(2)
    changed = run(flow_repo, "python", "-m", "flows.pipeline")
    assert "Task run 'evaluate' - Finished in state Completed" in changed.stdout + changed.stderr
    set_repeats(1)
    back = run(flow_repo, "python", "-m", "flows.pipeline")
    assert "stage evaluate restored from DVC's run cache" in back.stdout + back.stderr
    assert (flow_repo / "data/evaluation/metrics.json").read_bytes() == before  # not measured again
    assert "up to date" in run(flow_repo, "dvc", "status").stdout
