import dataclasses

import pyarrow as pa
import pytest

from tinybert import sharding
from tinybert.errors import InputError
from tinybert.io import read_sharded, write_json, write_parquet
from tinybert.sharding import Progress, Shard, ShardJob, ShardProgress, plan_shards, publish_shards, resume_shards


def test_shards_cover_every_row_once_in_order():
    shards = plan_shards(10, 4)
    assert [(s.index, s.start, s.stop) for s in shards] == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    assert [s.file for s in shards][-1] == "shard-00002.parquet"


def test_stage_progress_reports_shards_done_rate_and_eta(capsys):
    progress = Progress("augment", shards=2, unit_total=10, unit="examples")
    progress.update(4)
    line = capsys.readouterr().err
    assert line.startswith("[augment] shards 1/2, ") and "examples/s, ETA " in line


def test_progress_inside_a_long_shard_names_the_shard_and_its_rows(capsys):
    progress = ShardProgress("augment", Shard(3, 300, 400), total=100, unit="examples", every=0.0)
    progress.advance(40)
    assert capsys.readouterr().err.startswith("[augment] shard 3 (rows 300-400): 40/100 examples, ")
    progress.advance(60)  # the finished shard is reported by the stage-level line instead
    assert capsys.readouterr().err == ""


def test_progress_inside_a_shard_is_throttled(capsys):
    progress = ShardProgress("augment", Shard(0, 0, 100), total=100, unit="examples", every=3600.0)
    for _ in range(5):
        progress.advance(10)
    assert capsys.readouterr().err == ""


def _job_with_shards(tmp_path, sizes: list[int]) -> ShardJob:
    """A finished job whose shards hold consecutive numbers, ``sizes[i]`` rows in shard i."""
    work = tmp_path / "work"
    work.mkdir(parents=True)
    shards, start = [], 0
    for index, size in enumerate(sizes):
        shard = Shard(index, start, start + size)
        write_parquet(pa.table({"n": pa.array(range(start, start + size), pa.int64())}), work / shard.file)
        shards.append(shard)
        start += size
    return ShardJob(compute="unused:unused", context=(), work_dir=work, shards=tuple(shards))


def test_progress_counts_a_jobs_work_in_its_unit_and_rows_by_default(tmp_path):
    job = _job_with_shards(tmp_path, [3, 2])
    rows = Progress.of("prepare-corpus", job)
    assert (rows.total, rows.unit) == (5, "rows")
    examples = Progress.of("augment", dataclasses.replace(job, unit="examples", work=(3, 0)))
    assert (examples.total, examples.unit) == (3, "examples")


def test_shards_an_earlier_run_finished_are_not_counted_as_this_runs_work(tmp_path, capsys):
    job = _job_with_shards(tmp_path, [3, 2, 4])
    write_json(job.stats_file(job.shards[0]), {"rows": 3})
    # shard 1's file has no stats beside it: cut off while writing them, so it is still to do
    progress = Progress.of("augment", job)
    results, todo = resume_shards(job, progress)
    assert results == {0: {"rows": 3}}
    assert todo == [job.shards[1], job.shards[2]]
    # shard 0 counts as done but not towards the rate; only the other shards' rows are left for the ETA
    assert (progress.done_shards, progress.done_units, progress.total) == (1, 0, 6)
    assert capsys.readouterr().err == "[augment] shards 1/3 done by an earlier run; resuming\n"
    progress.update(2)
    assert capsys.readouterr().err.startswith("[augment] shards 2/3 (1 resumed), ")


def test_a_run_an_earlier_one_finished_says_nothing_is_left(tmp_path, capsys):
    job = _job_with_shards(tmp_path, [3, 2])
    for shard in job.shards:
        write_json(job.stats_file(shard), {"rows": shard.stop - shard.start})
    results, todo = resume_shards(job, Progress.of("augment", job))
    assert (len(results), todo) == (2, [])
    assert capsys.readouterr().err == "[augment] shards 2/2 done by an earlier run; nothing left to compute\n"


def test_a_fresh_run_says_nothing_of_an_earlier_one(tmp_path, capsys):
    job = _job_with_shards(tmp_path, [3, 2])
    results, todo = resume_shards(job, Progress.of("augment", job))
    assert (results, todo) == ({}, list(job.shards))
    assert capsys.readouterr().err == ""


def test_a_job_refuses_work_that_does_not_match_its_shards(tmp_path):
    job = _job_with_shards(tmp_path, [3, 2])
    with pytest.raises(ValueError, match="work lists 1 shards, the job has 2"):
        dataclasses.replace(job, work=(3,))
    with pytest.raises(ValueError, match="numbered 0..n-1"):
        dataclasses.replace(job, shards=job.shards[::-1])


def test_published_files_hold_a_fixed_number_of_rows_whatever_the_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(sharding, "PART_ROWS", 4)
    schema = pa.schema([("n", pa.int64())])
    outputs = []
    for layout in ([10], [3, 3, 3, 1], [1] * 10, [0, 7, 0, 3]):
        job = _job_with_shards(tmp_path / str(len(outputs)), layout)
        out = tmp_path / str(len(outputs)) / "out"
        manifest = publish_shards(job, out, [{}] * len(layout), schema, {"stage": "test"})
        assert [p["rows"] for p in manifest["shards"]] == [4, 4, 2]
        assert read_sharded(out).column("n").to_pylist() == list(range(10))
        assert not job.work_dir.exists()
        outputs.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert all(files == outputs[0] for files in outputs)


def test_a_job_without_rows_publishes_one_empty_file(tmp_path):
    job = _job_with_shards(tmp_path, [0, 0])
    manifest = publish_shards(job, tmp_path / "out", [{}, {}], pa.schema([("n", pa.int64())]), {})
    assert manifest["rows"] == 0 and len(manifest["shards"]) == 1
    assert read_sharded(tmp_path / "out").num_rows == 0


def _published(tmp_path, monkeypatch):
    monkeypatch.setattr(sharding, "PART_ROWS", 4)
    out = tmp_path / "out"
    publish_shards(_job_with_shards(tmp_path, [10]), out, [{}], pa.schema([("n", pa.int64())]), {})
    return out


def test_a_shard_changed_after_publishing_is_refused_naming_the_file(tmp_path, monkeypatch):
    out = _published(tmp_path, monkeypatch)
    # Valid parquet with other rows: only the manifest's checksum can tell.
    write_parquet(pa.table({"n": pa.array([7, 7, 7, 7], pa.int64())}), out / "part-00001.parquet")
    with pytest.raises(InputError, match=r"part-00001\.parquet: contents differ from the sha256 in manifest\.json"):
        read_sharded(out)


def test_a_shard_missing_from_a_published_folder_is_a_clear_error(tmp_path, monkeypatch):
    out = _published(tmp_path, monkeypatch)
    (out / "part-00002.parquet").unlink()
    with pytest.raises(InputError, match=r"part-00002\.parquet: listed in manifest\.json but cannot be read"):
        read_sharded(out)
