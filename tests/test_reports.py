"""What the evaluate stage's metrics turn into, and the teacher-logits cache's guard."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tinybert.distill.teacher_logits import load_teacher_logits
from tinybert.errors import InputError
from tinybert.io import content_sha256
from tinybert.summary import summary_table


def _entry(dev, mismatched, test):
    scores = {"dev": dev, "dev_mismatched": mismatched, "test": test}
    return {name: {"accuracy": v} for name, v in scores.items()} | {
        "parameters": 10_000_000, "disk_bytes": 40_000_000, "throughput_per_s": 100.0
    }


def test_summary_lists_every_evaluated_split_such_as_mnli_mismatched(tmp_path):
    report = {
        "metric": "accuracy",
        "splits": ["dev", "dev_mismatched", "test"],
        "teacher": _entry(0.84, 0.83, 0.82),
        "student": _entry(0.80, 0.79, 0.78),
        "retention": {"dev": 0.80 / 0.84, "dev_mismatched": 0.79 / 0.83, "test": 0.78 / 0.82},
        "size_ratio": 1.0,
        "speedup": 1.0,
        "majority_baseline": {"dev": 0.35, "dev_mismatched": 0.36, "test": 0.34},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(report))
    table = summary_table(tmp_path / "metrics.json")
    assert "dev_mismatched accuracy | 0.8300  | 0.7900  | 95.2%" in table
    assert "majority-class baseline: dev 0.3500, dev_mismatched 0.3600, test 0.3400" in table


def test_a_teacher_at_zero_gives_no_retention_and_the_summary_still_prints(tmp_path):
    # A single-class teacher scores an MCC of exactly 0 (CoLA): the ratio has no value.
    report = {"metric": "mcc", "splits": ["dev"], "teacher": _entry(0.0, 0, 0) | {"dev": {"mcc": 0.0}},
              "student": _entry(0.0, 0, 0) | {"dev": {"mcc": 0.1}}, "retention": {"dev": None},
              "size_ratio": 1.0, "speedup": 1.0}
    (tmp_path / "metrics.json").write_text(json.dumps(report))
    import re

    assert re.search(r"dev mcc +\| 0\.0000 +\| 0\.1000 +\| n/a \(teacher at 0\)", summary_table(tmp_path / "metrics.json"))


@pytest.mark.parametrize("text", ["{not json", "{}", "[]"])
def test_a_metrics_file_that_is_not_the_evaluate_stages_is_a_one_line_error(tmp_path, text):
    (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(InputError, match="metrics.json: not the evaluate stage's metrics"):
        summary_table(tmp_path / "metrics.json")


def test_the_ablation_table_shows_no_retention_for_a_teacher_at_zero():
    from tinybert.ablation import markdown_table

    row = {"slug": "full", "label": "TinyBERT (full)", "metric": "mcc", "dev": 0.1, "test": 0.2,
           "teacher_dev": 0.0, "retention_dev": None}
    assert "| TinyBERT (full) | 0.1000 | 0.2000 |  | n/a (teacher at 0) |" in markdown_table([row])


def _inputs(root):
    """A one-shard augmented set and a teacher folder, as the cache records them."""
    augmented, teacher = root / "augmented", root / "teacher"
    augmented.mkdir(parents=True)
    teacher.mkdir()
    (augmented / "manifest.json").write_text(json.dumps({"shards": [{"sha256": "abc"}]}))
    (teacher / "model.safetensors").write_bytes(b"weights")
    return augmented, teacher


def _cache(folder, rows=4, max_seq_len=64):
    augmented, teacher = _inputs(folder.parent)
    folder.mkdir()
    pq.write_table(pa.table({"row": list(range(rows)), "logits": [[0.5, -0.5]] * rows}), folder / "logits.parquet")
    (folder / "info.json").write_text(json.dumps({"rows": rows, "num_labels": 2, "max_seq_len": max_seq_len,
                                                  "augmented_shards": ["abc"], "teacher": content_sha256(teacher)}))
    return folder


def _load(folder, rows=4, max_seq_len=64):
    return load_teacher_logits(folder, rows=rows, max_seq_len=max_seq_len, augmented_dir=folder.parent / "augmented",
                               teacher_digest=content_sha256(folder.parent / "teacher"))


def test_cached_teacher_logits_load_as_a_rows_by_labels_tensor(tmp_path):
    logits = _load(_cache(tmp_path / "c"))
    assert tuple(logits.shape) == (4, 2) and logits[0].tolist() == [0.5, -0.5]


def test_a_cache_made_for_other_rows_or_lengths_is_refused(tmp_path):
    folder = _cache(tmp_path / "c")
    with pytest.raises(InputError, match="for 4 rows at length 64, task-distill has 5 rows at length 64"):
        _load(folder, rows=5)
    with pytest.raises(InputError, match="rerun the teacher-logits stage"):
        _load(folder, max_seq_len=128)
    with pytest.raises(InputError, match="no cached teacher logits"):
        _load(tmp_path / "missing")


def test_a_cache_made_from_another_augmented_set_or_teacher_is_refused(tmp_path):
    folder = _cache(tmp_path / "c")
    (tmp_path / "teacher/model.safetensors").write_bytes(b"retrained")
    with pytest.raises(InputError, match="computed for another teacher; rerun the teacher-logits stage"):
        _load(folder)
    folder = _cache(tmp_path / "other/c")
    (tmp_path / "other/augmented/manifest.json").write_text(json.dumps({"shards": [{"sha256": "def"}]}))
    with pytest.raises(InputError, match="computed for another augmented set"):
        _load(folder)
