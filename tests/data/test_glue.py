"""GLUE task folders are read as distributed: TSV per task, the reference's label order."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tinybert.config import TaskConfig
from tinybert.data import task
from tinybert.errors import InputError

MNLI_TRAIN_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label"
)
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER.replace("label1\tgold_label", "label1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label")
MNLI_LABELS = ("contradiction", "entailment", "neutral")


def mnli_line(i: int, label: str, dev: bool = False) -> str:
    votes = "\t".join([label] * (5 if dev else 1))
    return f'{i}\t1\t1a\tfiction\t(x)\t(y)\t(X)\t(Y)\tThe "premise {i}\tA hypothesis {i}\t{votes}\t{label}'


def write_mnli(folder: Path, n_train: int = 30) -> Path:
    folder.mkdir(parents=True)
    labels = [MNLI_LABELS[i % 3] for i in range(n_train)]
    (folder / "train.tsv").write_text("\n".join([MNLI_TRAIN_HEADER] + [mnli_line(i, lab) for i, lab in enumerate(labels)]) + "\n")
    for name, offset in (("dev_matched.tsv", 0), ("dev_mismatched.tsv", 1)):
        rows = [mnli_line(100 + i, MNLI_LABELS[(i + offset) % 3], dev=True) for i in range(6)]
        (folder / name).write_text("\n".join([MNLI_DEV_HEADER] + rows) + "\n")
    return folder


def build(folder: Path, out: Path, **params) -> tuple[dict, dict[str, list[dict]]]:
    task.run(TaskConfig(source=str(folder), **params), out_dir=out)
    info = json.loads((out / "labels.json").read_text())
    return info, {name: pq.read_table(out / f"{name}.parquet").to_pylist() for name in info["rows"]}


def test_mnli_keeps_the_reference_label_order_and_both_dev_sets(tmp_path):
    info, splits = build(write_mnli(tmp_path / "MNLI"), tmp_path / "out")
    assert info["label_names"] == ["contradiction", "entailment", "neutral"]
    assert info["eval_splits"] == ["dev", "dev_mismatched", "test"]
    assert info["text_b"] is True and info["num_labels"] == 3
    assert info["glue_task"] == "mnli"  # for the per-task defaults (augment.n_aug: auto)
    assert info["rows"]["dev"] == info["rows"]["dev_mismatched"] == 6
    assert info["rows"]["train"] + info["rows"]["test"] == 30
    first = splits["dev"][0]
    assert first["text"] == 'The "premise 100' and first["text_b"] == "A hypothesis 100"  # quotes kept as text
    assert first["label"] == 0.0  # contradiction
    assert splits["dev_mismatched"][0]["label"] == 1.0  # entailment


def test_cola_has_no_header_and_reports_mcc(tmp_path):
    folder = tmp_path / "CoLA"
    folder.mkdir()
    lines = [f"gj04\t{i % 2}\t\tSentence number {i} ." for i in range(20)]
    (folder / "train.tsv").write_text("\n".join(lines) + "\n")
    (folder / "dev.tsv").write_text("\n".join(lines[:4]) + "\n")
    info, splits = build(folder, tmp_path / "out")
    assert (info["metric"], info["label_names"], info["text_b"]) == ("mcc", ["0", "1"], False)
    assert splits["dev"][1] == {"id": 1, "text": "Sentence number 1 .", "text_b": None, "label": 1.0}


def test_sts_b_is_a_regression_task(tmp_path):
    folder = tmp_path / "STS-B"
    folder.mkdir()
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    rows = [f"{i}\tmain\tf\t2012\t{i}\tnone\tnone\tA man {i}.\tA woman {i}.\t{i % 5}.{i % 10}" for i in range(20)]
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text("\n".join([header] + rows) + "\n")
    info, splits = build(folder, tmp_path / "out")
    assert (info["task_type"], info["metric"], info["num_labels"]) == ("regression", "spearman", 1)
    assert splits["dev"][3]["label"] == pytest.approx(3.3)


def test_malformed_qqp_lines_are_skipped_as_the_reference_skips_them(tmp_path):
    folder = tmp_path / "QQP"
    folder.mkdir()
    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
    rows = [f"{i}\t{i}\t{i + 1}\tWhy {i}?\tHow {i}?\t{i % 2}" for i in range(20)]
    (folder / "train.tsv").write_text("\n".join([header] + rows[:10] + ["99\tbroken line"] + rows[10:]) + "\n")
    (folder / "dev.tsv").write_text("\n".join([header] + rows[:4]) + "\n")
    info, _ = build(folder, tmp_path / "out")
    assert info["rows"]["train"] + info["rows"]["test"] == 20


def test_rows_with_an_empty_text_are_skipped_and_counted_not_fatal(tmp_path, capsys):
    # QQP's train.tsv as distributed has two rows whose question2 is empty (ids 310137, 362246).
    folder = tmp_path / "QQP"
    folder.mkdir()
    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
    rows = [f"{i}\t{i}\t{i + 1}\tWhy {i}?\tHow {i}?\t{i % 2}" for i in range(20)]
    empty = ["310137\t1\t2\tHow can I create an Android app?\t\t0", "7\t1\t2\t  \tHow?\t1"]
    (folder / "train.tsv").write_text("\n".join([header] + rows[:10] + empty + rows[10:]) + "\n")
    (folder / "dev.tsv").write_text("\n".join([header] + rows[:4]) + "\n")
    info, splits = build(folder, tmp_path / "out")
    assert info["rows"]["train"] + info["rows"]["test"] == 20
    assert all(r["text"] and r["text_b"] for rows_ in splits.values() for r in rows_)
    assert "train.tsv: skipped 2 rows with an empty text" in capsys.readouterr().err


def test_task_name_can_be_given_when_the_folder_is_named_otherwise(tmp_path):
    folder = write_mnli(tmp_path / "my-nli-copy")
    with pytest.raises(InputError, match="unknown GLUE task 'my-nli-copy'; set task.glue_task"):
        build(folder, tmp_path / "out")
    info, _ = build(folder, tmp_path / "out", glue_task="mnli")
    assert info["label_names"][0] == "contradiction"


def test_a_label_outside_the_task_names_the_file_and_row(tmp_path):
    folder = write_mnli(tmp_path / "MNLI")
    with open(folder / "dev_matched.tsv", "a") as fh:
        fh.write(mnli_line(200, "maybe", dev=True) + "\n")
    data_rows = len((folder / "dev_matched.tsv").read_text().splitlines()) - 1  # the header is not a row
    with pytest.raises(InputError, match=rf"dev_matched.tsv: data row {data_rows}: label 'maybe' is not in label_names"):
        build(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_dev_file_is_named(tmp_path):
    folder = write_mnli(tmp_path / "MNLI")
    (folder / "dev_mismatched.tsv").unlink()
    with pytest.raises(InputError, match="dev_mismatched.tsv: GLUE file missing"):
        build(folder, tmp_path / "out")


def test_a_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path):
    folder = write_mnli(tmp_path / "MNLI")
    with open(folder / "train.tsv", "ab") as fh:
        fh.write(mnli_line(300, "neutral").replace("premise", "caf\u00e9").encode("latin-1") + b"\n")
    with pytest.raises(InputError, match=r"train.tsv: not UTF-8 text \(byte 0xe9 at offset \d+\)"):
        build(folder, tmp_path / "out")


def test_the_glue_format_needs_a_folder(tmp_path):
    source = write_mnli(tmp_path / "MNLI") / "train.tsv"
    with pytest.raises(InputError, match=r"train.tsv: task.format glue reads a GLUE task folder"):
        build(source, tmp_path / "out", format="glue")


def test_a_byte_order_mark_and_windows_line_ends_read_like_a_plain_file(tmp_path):
    plain = write_mnli(tmp_path / "plain" / "MNLI")
    windows = write_mnli(tmp_path / "windows" / "MNLI")
    for name in ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"):
        text = (windows / name).read_text()
        (windows / name).write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    (info_w, splits_w), (info_p, splits_p) = build(windows, tmp_path / "out-w"), build(plain, tmp_path / "out-p")
    assert splits_w == splits_p
    provenance = ("source", "source_sha256")
    assert {k: v for k, v in info_w.items() if k not in provenance} == {k: v for k, v in info_p.items() if k not in provenance}


def test_the_offset_of_a_bad_byte_counts_the_byte_order_mark(tmp_path):
    folder = write_mnli(tmp_path / "MNLI")
    good = (folder / "train.tsv").read_bytes()
    (folder / "train.tsv").write_bytes(b"\xef\xbb\xbf" + good + b"\xe9\n")
    with pytest.raises(InputError, match=rf"train.tsv: not UTF-8 text \(byte 0xe9 at offset {3 + len(good)}\)"):
        build(folder, tmp_path / "out")


def test_a_train_file_of_one_row_is_refused_before_anything_is_written(tmp_path):
    folder = tmp_path / "MNLI"
    write_mnli(folder, n_train=1)
    with pytest.raises(InputError, match=r"train.tsv: 1 rows leave the train split empty .* need at least 2 rows"):
        build(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_each_tasks_headline_metric_is_the_papers():
    # TinyBERT's GLUE table: F1 for MRPC and QQP, Spearman for STS-B, MCC for CoLA, accuracy for
    # the rest; retention and the ablation table compare the same figures as the paper.
    from tinybert.data.glue import GLUE_TASKS

    assert {name: task.metric for name, task in GLUE_TASKS.items()} == {
        "cola": "mcc", "sst-2": "accuracy", "mrpc": "f1", "sts-b": "spearman", "qqp": "f1",
        "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy", "wnli": "accuracy",
    }
