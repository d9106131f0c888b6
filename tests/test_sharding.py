from tinybert.sharding import Progress, Shard, ShardProgress, plan_shards


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
