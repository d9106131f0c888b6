"""Prefect maps a sharded stage's shards (augment, prepare-corpus) over a task runner and writes
what `dvc repro` writes."""
from __future__ import annotations

import re
import shutil

import pytest

from tests.integration.conftest import make_tiny_repo, run

pytestmark = pytest.mark.slow


def files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def shard_repo(built_repo, tmp_path_factory):
    repo = make_tiny_repo(tmp_path_factory.mktemp("shards") / "repo")
    for folder in ("data/task", "data/mlm"):
        shutil.copytree(built_repo / folder, repo / folder)
    return repo


@pytest.mark.parametrize("runner", ["processes", "dask"])
def test_shards_mapped_over_a_task_runner_give_the_dvc_output_byte_for_byte(shard_repo, built_repo, runner):
    shutil.rmtree(shard_repo / "data/augmented", ignore_errors=True)
    result = run(shard_repo, "python", "-m", "flows.sharded", "augment", "--runner", runner, "--workers", "2")
    expected = files(built_repo / "data/augmented")
    assert len(expected) >= 2  # the rows and the manifest
    assert files(shard_repo / "data/augmented") == expected
    # the rate counts what the stage augments, as under dvc repro
    assert re.search(r"\[augment\] shards 4/4, [\d.]+ examples/s", result.stderr + result.stdout)
    assert "up to date" in run(shard_repo, "dvc", "status", "augment").stdout  # recorded, as dvc repro would


def test_prepare_corpus_shards_mapped_over_worker_processes_give_the_dvc_output_byte_for_byte(shard_repo, built_repo):
    shutil.rmtree(shard_repo / "data/corpus", ignore_errors=True)
    result = run(shard_repo, "python", "-m", "flows.sharded", "prepare-corpus", "--runner", "processes",
                 "--workers", "2")
    assert files(shard_repo / "data/corpus") == files(built_repo / "data/corpus")
    # 40 documents, 10 a shard
    assert re.search(r"\[prepare-corpus\] shards 4/4, [\d.]+ documents/s", result.stderr + result.stdout)
    assert "up to date" in run(shard_repo, "dvc", "status", "prepare-corpus").stdout


RESUME_DRIVER = """
from pathlib import Path
from tinybert.augment import stage
from tinybert.config import load_params
from tinybert.sharding import compute_shard
from tinybert.stages import BY_NAME

augment = BY_NAME["augment"]
deps = {k: Path(v).resolve() for k, v in augment.deps.items()}
job = stage.plan(*augment.arguments(load_params("params.yaml")), **deps)
for shard in job.shards[:2]:
    compute_shard(job, shard)  # what an interrupted run left

real = stage.augment_shard


def recorded(job, shard):
    with open("computed", "a") as f:
        f.write(f"{shard.index}\\n")
    return real(job, shard)


stage.augment_shard = recorded
from flows.sharded import run_sharded
run_sharded("augment", "params.yaml", "threads", 2, None)
"""


def test_a_resumed_flow_maps_only_the_shards_still_missing(shard_repo, built_repo):
    shutil.rmtree(shard_repo / "data/augmented", ignore_errors=True)
    (shard_repo / "computed").unlink(missing_ok=True)
    (shard_repo / "resume.py").write_text(RESUME_DRIVER)
    result = run(shard_repo, "python", "resume.py")
    assert sorted((shard_repo / "computed").read_text().split()) == ["2", "3"]
    assert files(shard_repo / "data/augmented") == files(built_repo / "data/augmented")
    log = result.stderr + result.stdout
    assert "[augment] shards 2/4 done by an earlier run; resuming" in log
    assert re.search(r"\[augment\] shards 4/4 \(2 resumed\), [\d.]+ examples/s", log)


FLAKY_DRIVER = """
from pathlib import Path
from tinybert.augment import stage

real = stage.augment_shard


def fails_once(job, shard):
    # What a worker of a cluster started elsewhere gets: absolute paths, or it reads its own folder.
    paths = [job.work_dir, *(p for p in job.context if isinstance(p, Path))]
    if not all(p.is_absolute() for p in paths):
        Path("relative-paths").write_text(repr(paths))
    marker = Path(f"failed-once-{shard.index}")
    if not marker.exists():
        marker.touch()
        raise RuntimeError(f"transient failure of shard {shard.index}")
    return real(job, shard)


stage.augment_shard = fails_once
from flows.sharded import run_sharded
run_sharded("augment", "params.yaml", "threads", 2, None)
"""


def test_a_shard_that_fails_is_retried_and_the_output_is_still_complete(shard_repo, built_repo):
    shutil.rmtree(shard_repo / "data/augmented", ignore_errors=True)
    (shard_repo / "flaky.py").write_text(FLAKY_DRIVER)
    result = run(shard_repo, "python", "flaky.py")
    assert not (shard_repo / "relative-paths").exists(), (shard_repo / "relative-paths").read_text()
    assert len(list(shard_repo.glob("failed-once-*"))) == 4  # every shard failed once...
    assert "Retry 1/2" in result.stderr + result.stdout
    assert files(shard_repo / "data/augmented") == files(built_repo / "data/augmented")  # ...and was redone
