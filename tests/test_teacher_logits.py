"""The teacher-logits stage works one augmented part at a time and resumes after a kill."""
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from tinybert import sharding
from tinybert.augment.stage import SCHEMA
from tinybert.config import TaskDistillConfig
from tinybert.distill import teacher_logits
from tinybert.errors import InputError
from tinybert.io import content_sha256, read_json, write_parquet
from tinybert.sharding import Shard, ShardJob, publish_shards

class Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing on the way catches it."""


WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran"]


def _teacher(folder):
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(pieces), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    BertTokenizerFast(vocab={piece: i for i, piece in enumerate(pieces)}).save_pretrained(folder)
    return folder


def _augmented(tmp_path, monkeypatch, rows=10):
    """An augmented set of ``rows`` rows published as parts of 4 rows: three part files."""
    monkeypatch.setattr(sharding, "PART_ROWS", 4)
    work = tmp_path / "work"
    work.mkdir()
    texts = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(1 + i % 5)) for i in range(rows)]
    write_parquet(pa.table({"source_id": list(range(rows)), "variant": [0] * rows, "text": texts,
                            "text_b": [None] * rows, "label": [float(i % 2) for i in range(rows)],
                            "is_original": [True] * rows}, schema=SCHEMA), work / Shard(0, 0, rows).file)
    job = ShardJob(compute="unused:unused", context=(), work_dir=work, shards=(Shard(0, 0, rows),))
    out = tmp_path / "augmented"
    publish_shards(job, out, [{}], SCHEMA, {})
    return out


def _run(tmp_path, augmented, out_name):
    teacher_logits.run(TaskDistillConfig(max_seq_len=16), augmented_dir=augmented, teacher_dir=tmp_path / "teacher",
                       out_dir=tmp_path / out_name)
    return teacher_logits.load_teacher_logits(tmp_path / out_name, rows=10, max_seq_len=16, augmented_dir=augmented,
                                              teacher_digest=content_sha256(tmp_path / "teacher"))


def _counted(real, calls: list, kill_at_call: int = 0):
    """``batched_logits`` that records each call's row count and is killed at call ``kill_at_call``."""
    def wrapped(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == kill_at_call:
            raise Killed
        return real(*args, **kwargs)
    return wrapped


def test_a_killed_run_resumes_at_the_first_unfinished_part_with_the_same_logits(tmp_path, monkeypatch, capsys):
    _teacher(tmp_path / "teacher")
    augmented = _augmented(tmp_path, monkeypatch)
    straight = _run(tmp_path, augmented, "straight")

    real, calls = teacher_logits.batched_logits, []
    monkeypatch.setattr(teacher_logits, "batched_logits", _counted(real, calls, kill_at_call=2))
    with pytest.raises(Killed):
        _run(tmp_path, augmented, "resumed")
    assert not (tmp_path / "resumed").exists()  # no half-written artifact

    monkeypatch.setattr(teacher_logits, "batched_logits", _counted(real, calls))
    capsys.readouterr()
    calls.clear()
    resumed = _run(tmp_path, augmented, "resumed")
    assert calls == [4, 2]  # parts 2 and 3 only
    assert "[teacher-logits] part 1/3 done before, reused" in capsys.readouterr().err
    assert torch.equal(resumed, straight) and tuple(resumed.shape) == (10, 2)
    assert (tmp_path / "resumed" / "logits.parquet").read_bytes() == (tmp_path / "straight" / "logits.parquet").read_bytes()
    # the type a single write of the whole table gives, not the one parquet reads a part back as
    assert pq.read_schema(tmp_path / "resumed" / "logits.parquet").field("logits").type == pa.list_(pa.float32())
    assert read_json(tmp_path / "resumed" / "info.json")["rows"] == 10


def test_a_saved_part_that_cannot_be_read_is_computed_again(tmp_path, monkeypatch):
    _teacher(tmp_path / "teacher")
    augmented = _augmented(tmp_path, monkeypatch)
    real, calls = teacher_logits.batched_logits, []
    monkeypatch.setattr(teacher_logits, "batched_logits", _counted(real, calls, kill_at_call=2))
    with pytest.raises(Killed):
        _run(tmp_path, augmented, "out")
    [part] = Path(os.environ["TINYBERT_CHECKPOINTS"]).glob("teacher-logits-*/part-00000.parquet")
    part.write_bytes(part.read_bytes()[:40])  # cut short, as a crash without fsync can leave it

    monkeypatch.setattr(teacher_logits, "batched_logits", real)
    assert tuple(_run(tmp_path, augmented, "out").shape) == (10, 2)


@pytest.mark.parametrize("setting, why", [
    ({"one_step": True}, "task_distill.one_step is true"),
    ({"distillation": False}, "task_distill.distillation is false (w/o TD)"),
])
def test_logits_the_prediction_step_never_reads_are_not_computed_and_the_cache_says_why(
        tmp_path, monkeypatch, setting, why):
    _teacher(tmp_path / "teacher")
    augmented = _augmented(tmp_path, monkeypatch)
    monkeypatch.setattr(teacher_logits, "batched_logits", lambda *a, **k: pytest.fail("the teacher ran"))
    teacher_logits.run(TaskDistillConfig(max_seq_len=16, **setting), augmented_dir=augmented,
                       teacher_dir=tmp_path / "teacher", out_dir=tmp_path / "out")

    assert [p.name for p in (tmp_path / "out").iterdir()] == ["info.json"]
    assert read_json(tmp_path / "out" / "info.json")["not_computed"].startswith(why)
    with pytest.raises(InputError, match=r"out: no cached teacher logits, they were not computed \(task_distill\..*"
                                         r"rerun the teacher-logits stage"):
        teacher_logits.load_teacher_logits(tmp_path / "out", rows=10, max_seq_len=16, augmented_dir=augmented,
                                           teacher_digest=content_sha256(tmp_path / "teacher"))
