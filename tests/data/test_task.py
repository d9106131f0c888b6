"""The task stage: formats, labels, sampling, splits, the embedded default, and bad inputs."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tinybert.config import TaskConfig
from tinybert.data import task
from tinybert.errors import InputError

SPLITS = ("train", "dev", "test")


def build(tmp_path: Path, source: Path | str, **params) -> tuple[dict, dict[str, list[dict]]]:
    out = tmp_path / "task"
    task.run(TaskConfig(source=str(source), **params), out_dir=out)
    info = json.loads((out / "labels.json").read_text())
    return info, {name: pq.read_table(out / f"{name}.parquet").to_pylist() for name in SPLITS}


def write_csv(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def sentiment_rows(n: int) -> list[list]:
    return [[f"sentence number {i} is {'good' if i % 3 else 'bad'}", "pos" if i % 3 else "neg"] for i in range(n)]


def fails(tmp_path: Path, source: Path | str, *fragments: str, **params) -> str:
    """Run the stage expecting InputError: one line, naming each fragment, no output folder."""
    with pytest.raises(InputError) as excinfo:
        build(tmp_path, source, **params)
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "task").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".task")]
    return message


# ----------------------------------------------------------------------------------- the embedded default
def test_embedded_movie_reviews_default_gives_10568_binary_rows_split_80_10_10():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        info, splits = build(Path(tmp), "embedded:movie-reviews")
    assert info["task_type"] == "classification"
    assert info["label_names"] == ["negative", "positive"]
    assert (info["num_labels"], info["metric"], info["text_b"]) == (2, "accuracy", False)
    assert info["source"] == "embedded:movie-reviews"
    assert len(info["source_sha256"]) == 64
    assert sum(info["rows"].values()) == 10568  # 10,605 snippets less the 37 with score 0
    assert info["rows"] == {name: len(rows) for name, rows in splits.items()}
    assert info["majority_class"] == "negative"  # 5,326 negative against 5,242 positive
    ids = [r["id"] for rows in splits.values() for r in rows]
    assert len(set(ids)) == len(ids)
    for rows in splits.values():
        assert {r["label"] for r in rows} == {0.0, 1.0}
        assert all(r["text_b"] is None and r["text"] for r in rows)
        positive = sum(r["label"] for r in rows) / len(rows)
        assert abs(positive - 5242 / 10568) < 0.01  # stratified
    first = min((r for rows in splits.values() for r in rows), key=lambda r: r["id"])
    assert first["text"].startswith("The Rock is destined") and first["label"] == 1.0


def test_movie_reviews_file_is_auto_detected_by_its_header_and_zero_scores_are_dropped(tmp_path):
    scores = [2.5, -1.0, 0, 1.2, -3, 0.1, -0.4, 0.0, 1, -2]
    rows = [[i + 1, score, f"review {i} text"] for i, score in enumerate(scores)]
    src = write_csv(tmp_path / "snippets.txt", ["id", "sentiment", "text"], rows, delimiter="\t")
    info, splits = build(tmp_path, src)
    assert sum(info["rows"].values()) == 8
    labels = {r["id"]: r["label"] for rows in splits.values() for r in rows}
    assert labels == {0: 1.0, 1: 0.0, 3: 1.0, 4: 0.0, 5: 1.0, 6: 0.0, 8: 1.0, 9: 0.0}


def test_a_movie_reviews_file_saved_with_a_byte_order_mark_is_still_recognised_by_its_header(tmp_path):
    rows = [[i + 1, [1.5, -2.0][i % 2], f"review {i} text"] for i in range(10)]
    src = write_csv(tmp_path / "snippets.txt", ["id", "sentiment", "text"], rows, delimiter="\t")
    src.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())
    info, splits = build(tmp_path, src)
    assert info["label_names"] == ["negative", "positive"] and sum(info["rows"].values()) == 10


def test_movie_reviews_as_regression_keeps_every_score_as_the_label(tmp_path):
    scores = [2.5, -1.0, 0, 1.25, -3, 0.5, 3.75, -2.5, 1, -0.25]
    rows = [[i + 1, score, f"review {i}"] for i, score in enumerate(scores)]
    src = write_csv(tmp_path / "snippets.tsv", ["id", "sentiment", "text"], rows, delimiter="\t")
    info, splits = build(tmp_path, src, format="movie-reviews", task_type="regression", metric="pearson",
                         dev_fraction=0.2, test_fraction=0.2)
    assert (info["label_names"], info["num_labels"], info["majority_class"]) == (None, 1, None)
    assert sorted(r["label"] for rows in splits.values() for r in rows) == sorted(float(x) for x in scores)


@pytest.mark.parametrize("setting", [{"label_column": "score"}, {"text_column": "review"}, {"text_b_column": "summary"}])
def test_columns_set_for_a_movie_reviews_file_are_refused_not_ignored(tmp_path, setting):
    rows = [[i + 1, [1.5, -2.0][i % 2], f"review {i} text"] for i in range(10)]
    src = write_csv(tmp_path / "snippets.txt", ["id", "sentiment", "text"], rows, delimiter="\t")
    (field, value), = setting.items()
    with pytest.raises(InputError, match=rf"snippets.txt: task.{field}='{value}', but the movie-reviews layout"):
        build(tmp_path, src, **setting)


# ----------------------------------------------------------------------------------- formats and labels
def test_csv_string_labels_become_ids_in_sorted_label_names(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], sentiment_rows(30))
    info, splits = build(tmp_path, src)
    assert info["label_names"] == ["neg", "pos"]
    assert info["majority_class"] == "pos"
    for rows in splits.values():
        for r in rows:
            assert r["label"] == (0.0 if r["text"].endswith("bad") else 1.0)


def test_tsv_json_and_parquet_sources_give_identical_splits(tmp_path):
    texts = [f"example sentence {i}" for i in range(20)]
    labels = [i % 2 for i in range(20)]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps({"sentence": t, "y": y}) + "\n" for t, y in zip(texts, labels)))
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.table({"sentence": texts, "y": labels}), parquet)
    tsv = write_csv(tmp_path / "d.tsv", ["sentence", "y"], list(zip(texts, labels)), delimiter="\t")
    sources = [tsv, jsonl, parquet]
    outputs = []
    for src in sources:
        info, splits = build(tmp_path, src, text_column="sentence", label_column="y")
        assert info["label_names"] == ["0", "1"]
        assert info["rows"] == {"train": 16, "dev": 2, "test": 2}
        for rows in splits.values():
            assert all(r["text"] == texts[r["id"]] and r["label"] == labels[r["id"]] for r in rows)
        outputs.append(splits)
    assert outputs[0] == outputs[1] == outputs[2]


def test_integer_labels_are_ordered_numerically_not_as_strings(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [[f"row {i}", [2, 10, 1][i % 3]] for i in range(30)])
    info, splits = build(tmp_path, src)
    assert info["label_names"] == ["1", "2", "10"]
    assert {r["label"] for r in splits["train"]} == {0.0, 1.0, 2.0}


def test_parquet_with_a_class_label_feature_keeps_its_label_names(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["unacceptable", "acceptable"])})
    rows = {"text": [f"sentence {i}" for i in range(10)], "label": [i % 2 for i in range(10)]}
    src = tmp_path / "cola.parquet"
    Dataset.from_dict(rows, features=features).to_parquet(str(src))
    info, splits = build(tmp_path, src, metric="mcc")
    assert info["label_names"] == ["unacceptable", "acceptable"]  # the feature's order, not sorted
    assert all(r["label"] == r["id"] % 2 for rows_ in splits.values() for r in rows_)


def test_json_list_of_records_is_read(tmp_path):
    src = tmp_path / "d.json"
    src.write_text(json.dumps([{"text": f"row {i}", "label": "ab"[i % 2]} for i in range(10)]))
    info, _ = build(tmp_path, src)
    assert (info["label_names"], sum(info["rows"].values())) == (["a", "b"], 10)


def test_given_label_names_fix_the_label_ids(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], sentiment_rows(30))
    info, splits = build(tmp_path, src, label_names=["pos", "neg", "neutral"])
    assert (info["label_names"], info["num_labels"]) == (["pos", "neg", "neutral"], 3)
    assert all(r["label"] == (1.0 if r["text"].endswith("bad") else 0.0) for r in splits["train"])


def test_pair_dataset_writes_text_b(tmp_path):
    rows = [[f"premise {i}", f"hypothesis {i}", ["entailment", "contradiction"][i % 2]] for i in range(20)]
    src = write_csv(tmp_path / "pairs.csv", ["premise", "hypothesis", "label"], rows)
    info, splits = build(tmp_path, src, text_column="premise", text_b_column="hypothesis")
    assert info["text_b"] is True
    for rows_ in splits.values():
        assert all(r["text_b"] == f"hypothesis {r['id']}" for r in rows_)


def test_regression_labels_are_floats_and_split_without_strata(tmp_path):
    rows = [[f"sentence {i}", f"sentence {i} again", i / 4] for i in range(20)]
    src = write_csv(tmp_path / "sts.csv", ["s1", "s2", "score"], rows)
    info, splits = build(tmp_path, src, text_column="s1", text_b_column="s2", label_column="score",
                         task_type="regression", metric="pearson")
    assert (info["task_type"], info["label_names"], info["num_labels"]) == ("regression", None, 1)
    assert all(r["label"] == r["id"] / 4 for rows_ in splits.values() for r in rows_)


def test_text_whitespace_is_collapsed_and_na_like_text_is_kept(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [["  two\t spaces ", "a"], ["NA", "b"], ["null", "a"]])
    _, splits = build(tmp_path, src)
    assert sorted(r["text"] for rows in splits.values() for r in rows) == ["NA", "null", "two spaces"]


# ----------------------------------------------------------------------------------- sampling and splits
def test_max_examples_keeps_the_same_seeded_sample_every_run(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], sentiment_rows(100))
    info, splits = build(tmp_path, src, max_examples=40)
    ids = sorted(r["id"] for rows in splits.values() for r in rows)
    assert sum(info["rows"].values()) == 40
    assert ids != list(range(40))  # a random sample, not the head of the file
    _, again = build(tmp_path, src, max_examples=40)
    assert again == splits
    _, other_seed = build(tmp_path, src, max_examples=40, seed=7)
    assert sorted(r["id"] for rows in other_seed.values() for r in rows) != ids


def test_split_is_deterministic_disjoint_stratified_and_sorted_by_id(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], sentiment_rows(300))
    info, splits = build(tmp_path, src, dev_fraction=0.2, test_fraction=0.1)
    assert info["rows"] == {"train": 210, "dev": 60, "test": 30}
    ids = [r["id"] for rows in splits.values() for r in rows]
    assert sorted(ids) == list(range(300))
    for rows in splits.values():
        assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
        assert Counter(r["label"] for r in rows)[0.0] == len(rows) // 3  # the neg third, exactly
    before = {name: (tmp_path / "task" / f"{name}.parquet").read_bytes() for name in SPLITS}
    build(tmp_path, src, dev_fraction=0.2, test_fraction=0.1)
    assert before == {name: (tmp_path / "task" / f"{name}.parquet").read_bytes() for name in SPLITS}


def test_output_schema_is_id_text_text_b_label(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], sentiment_rows(10))
    build(tmp_path, src)
    schema = pq.read_schema(tmp_path / "task" / "train.parquet")
    assert [(f.name, f.type) for f in schema] == [
        ("id", pa.int64()), ("text", pa.string()), ("text_b", pa.string()), ("label", pa.float64())
    ]


def test_splits_are_written_in_small_row_groups_so_shards_read_only_their_rows(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], sentiment_rows(3000))
    build(tmp_path, src, dev_fraction=0.05, test_fraction=0.05)
    meta = pq.ParquetFile(tmp_path / "task" / "train.parquet").metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes[:-1] == [task.SPLIT_ROW_GROUP_ROWS] * (len(sizes) - 1) and len(sizes) >= 2


# ----------------------------------------------------------------------------------- bad inputs
def test_missing_source_file_names_the_file_and_leaves_no_output(tmp_path):
    fails(tmp_path, tmp_path / "absent.csv", "absent.csv")


def test_missing_label_column_names_the_column_lists_the_columns_found_and_leaves_no_output(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["sentence", "y"], [["a b", 1]])
    fails(tmp_path, src, "'label'", "task.label_column", "sentence, y", text_column="sentence")


def test_missing_text_b_column_names_the_column(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], sentiment_rows(5))
    fails(tmp_path, src, "'hypothesis'", "text, label", text_b_column="hypothesis")


def test_header_only_dataset_is_empty_and_leaves_no_output(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [])
    fails(tmp_path, src, "d.csv")


def test_movie_reviews_with_only_zero_scores_is_empty_after_cleaning(tmp_path):
    src = write_csv(tmp_path / "s.tsv", ["id", "sentiment", "text"], [[1, 0, "meh"], [2, 0.0, "so so"]], delimiter="\t")
    fails(tmp_path, src, "s.tsv", "no rows")


def test_label_outside_given_label_names_names_the_value_and_the_row(tmp_path):
    rows = sentiment_rows(6) + [["an odd one", "maybe"]]
    src = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    fails(tmp_path, src, "'maybe'", "data row 7:", label_names=["neg", "pos"])


@pytest.mark.parametrize("labels, bad, kind", [([1, "x", 1.0, 0, 0], "'x'", "a word"),
                                               ([1, True, 1, 0, 0], "True", "true/false")])
def test_labels_mixing_numbers_with_words_are_refused_rather_than_read_as_one_more_class(tmp_path, labels, bad, kind):
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"text": f"sentence {i}", "label": v}) + "\n" for i, v in enumerate(labels)))
    fails(tmp_path, src, f"data row 2: label {bad} in column 'label' is {kind} but other labels are numbers",
          "task.label_names")


def test_an_infinite_class_label_is_refused_not_made_a_class(tmp_path):
    src = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": [f"sentence {i}" for i in range(5)], "label": [1.0, 0.0, float("inf"), 1.0, 0.0]}), src)
    fails(tmp_path, src, "data row 3: label inf in column 'label' is not a finite number")


def test_a_parquet_file_of_no_rows_says_so(tmp_path):
    src = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())}), src)
    fails(tmp_path, src, f"{src}: no data rows")


def test_missing_classification_label_names_the_row(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [["a", "x"], ["b", ""], ["c", "y"]])
    fails(tmp_path, src, "data row 2:", "missing label")


@pytest.mark.parametrize("marker", ["NA", "N/A", "null"])
def test_a_missing_value_marker_in_the_label_column_is_a_missing_label_not_one_more_class(tmp_path, marker):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [["a", 0], ["b", marker], ["c", 1]])
    fails(tmp_path, src, "data row 2:", "missing label", repr(marker))


def test_a_label_named_like_a_missing_value_is_a_class_when_label_names_lists_it(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], sentiment_rows(6) + [["no idea", "NA"]])
    info, _ = build(tmp_path, src, label_names=["neg", "pos", "NA"])
    assert info["label_names"] == ["neg", "pos", "NA"]


def test_a_file_name_with_glob_characters_is_that_file_not_a_pattern(tmp_path):
    write_csv(tmp_path / "reviews1.csv", ["text", "label"], [["the wrong file", "x"], ["also wrong", "y"]] * 3)
    src = write_csv(tmp_path / "reviews[1].csv", ["text", "label"], sentiment_rows(6))
    _, splits = build(tmp_path, src)
    texts = [row["text"] for rows in splits.values() for row in rows]
    assert texts and not any("wrong" in text for text in texts)


def test_a_csv_with_a_header_and_no_rows_says_so(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [])
    fails(tmp_path, src, "d.csv: no data rows")


def test_a_csv_is_not_typed_from_its_first_rows_alone(tmp_path):
    # The reader types columns from chunks of 10,000 rows: a float score, or a note in an unused
    # column, after that many rows must not fail the file.
    rows = [[f"sentence {i}", str(i % 5), "checked" if i > 11_000 else ""] for i in range(12_000)]
    rows[10_500][1] = "2.5"
    src = write_csv(tmp_path / "big.csv", ["text", "score", "notes"], rows)
    info, splits = build(tmp_path, src, label_column="score", task_type="regression", metric="pearson")
    labels = sorted(row["label"] for rows in splits.values() for row in rows)
    assert len(labels) == 12_000 and 2.5 in labels


def test_numeric_class_labels_from_a_csv_sort_as_numbers(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [[f"sentence {i}", i % 12] for i in range(48)])
    info, _ = build(tmp_path, src)
    assert info["label_names"] == [str(k) for k in range(12)]  # not 0, 1, 10, 11, 2, ...


def test_a_class_written_as_1_1dot0_or_with_blanks_around_it_is_one_class(tmp_path):
    src = tmp_path / "d.csv"
    src.write_text("text,label\n" + "".join(f"row {i},{[' 0', '1.0', '0', '1', '+1 '][i % 5]}\n" for i in range(40)))
    info, splits = build(tmp_path, src)
    assert info["label_names"] == ["0", "1"]
    assert all(r["label"] == float(r["id"] % 5 not in (0, 2)) for rows in splits.values() for r in rows)


def test_given_label_names_match_labels_written_another_way_and_may_not_name_a_class_twice(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [[f"row {i}", ["1.0", " 2"][i % 2]] for i in range(20)])
    info, splits = build(tmp_path, src, label_names=["2", "1"])
    assert info["label_names"] == ["2", "1"]
    assert all(r["label"] == float(r["id"] % 2 == 0) for rows in splits.values() for r in rows)
    with pytest.raises(InputError, match=r"task.label_names: '1' and '1.0' name the same class"):
        build(tmp_path, src, label_names=["1", "2", "1.0"])


def test_non_numeric_regression_label_names_the_value_and_the_row(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [["a", 0.5], ["b", "high"], ["c", 1.5]])
    fails(tmp_path, src, "'high'", "data row 2:", "not a number", task_type="regression", metric="pearson")


def test_a_regression_split_too_small_for_a_correlation_is_refused_before_training(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [[f"row {i}", i / 2] for i in range(8)])
    fails(tmp_path, src, "split has 1 row(s)", "at least 2", task_type="regression", metric="pearson")


def test_empty_text_names_the_row_and_the_column(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [["fine", "a"], ["   ", "b"], ["ok", "a"]])
    fails(tmp_path, src, "data row 2:", "empty text", "'text'")


def test_split_that_leaves_train_empty_is_an_error(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [["a", "x"], ["b", "y"]])
    fails(tmp_path, src, "d.csv", "train split empty")


def test_a_single_class_is_not_a_classification_task(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [["a", "x"], ["b", "x"], ["c", "x"]])
    fails(tmp_path, src, "single label 'x'")


def test_metric_must_fit_the_task_type(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [["a", 0.5], ["b", 1.0], ["c", 1.5]])
    fails(tmp_path, src, "task.metric", "'accuracy'", task_type="regression")


def test_unknown_file_type_asks_for_task_format(tmp_path):
    src = tmp_path / "d.xlsx"
    src.write_bytes(b"PK\x03\x04")
    fails(tmp_path, src, "d.xlsx", "task.format")


def test_unreadable_file_names_the_file(tmp_path):
    src = tmp_path / "d.parquet"
    src.write_bytes(b"not parquet at all")
    fails(tmp_path, src, "d.parquet", "cannot read")



def test_numbers_in_a_csv_text_column_stay_as_written(tmp_path):
    rows = [["007", "pos"], ["3.50", "neg"], ["1e3", "pos"], ["a sentence", "neg"]] * 3
    _, splits = build(tmp_path, write_csv(tmp_path / "d.csv", ["text", "label"], rows))
    assert {r["text"] for rows_ in splits.values() for r in rows_} == {"007", "3.50", "1e3", "a sentence"}


def test_an_empty_json_file_is_an_error_naming_the_file(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_bytes(b"")
    fails(tmp_path, src, "d.jsonl", "empty file")


def test_a_repeated_csv_column_name_is_an_error_naming_it(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "text", "label"], [["a b", "c d", "pos"], ["e f", "g h", "neg"]] * 3)
    fails(tmp_path, src, "d.csv", "'text'", "more than once")


def test_empty_trailing_header_cells_from_a_spreadsheet_are_not_repeated_names(tmp_path):
    src = write_csv(tmp_path / "d.csv", ["text", "label", "", ""], [["a b", "pos", "", ""], ["e f", "neg", "", ""]] * 3)
    info, _ = build(tmp_path, src)
    assert sum(info["rows"].values()) == 6


@pytest.mark.parametrize("field, value", [("text", ["good", "movie"]), ("label", {"name": "pos"})])
def test_a_list_or_object_where_a_value_belongs_names_the_row_and_column(tmp_path, field, value):
    rows = [{"text": f"row {i}", "label": "ab"[i % 2]} for i in range(6)]
    rows[4][field] = value
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fails(tmp_path, src, "d.jsonl", "data row 5:", repr(field), type(value).__name__)


@pytest.mark.parametrize("bad, hint", [(-1, "unlabelled"), (7, "not a class")])
def test_a_class_label_outside_its_names_is_an_error_not_the_last_class(tmp_path, bad, hint):
    from datasets import ClassLabel, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    rows = {"text": [f"sentence {i}" for i in range(10)], "label": [i % 2 for i in range(9)] + [bad]}
    src = tmp_path / "d.parquet"
    # datasets refuses to build such a column, but a parquet file's metadata can still declare it
    metadata = {b"huggingface": json.dumps({"info": {"features": features.to_dict()}}).encode()}
    pq.write_table(pa.table(rows).replace_schema_metadata(metadata), src)
    fails(tmp_path, src, "d.parquet", "data row 10:", f"label {bad}", hint)

def test_a_file_named_as_a_glue_task_records_it_for_the_per_task_defaults(tmp_path):
    src = write_csv(tmp_path / "sst.csv", ["text", "label"], sentiment_rows(30))
    info, _ = build(tmp_path / "named", src, glue_task="SST2")
    assert info["glue_task"] == "sst-2"  # augment.n_aug: auto then gives SST-2's 20
    info, _ = build(tmp_path / "plain", src)
    assert info["glue_task"] is None
    fails(tmp_path, src, "unknown GLUE task 'sentiment'", glue_task="sentiment")


def test_a_large_jsonl_whose_labels_turn_from_integers_to_decimals_is_read_whole(tmp_path):
    # datasets types a JSON column from its first ~10 MB block and failed on the first 2.5 after it.
    rows = [{"text": f"review number {i} " + "words " * 10, "score": i % 5} for i in range(160_000)]
    rows[-1]["score"] = 2.5
    rows[-2]["note"] = "a field no earlier row has"
    src = tmp_path / "big.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert src.stat().st_size > 12 * 2**20
    columns, _ = task.load_columns(src, "json")
    assert columns["score"][-1] == 2.5 and columns["score"][:3] == [0, 1, 2]
    assert columns["note"][-2] == "a field no earlier row has" and columns["note"][0] is None
    assert list(columns) == ["text", "score", "note"]


def test_json_array_jsonl_and_column_lists_give_the_same_columns(tmp_path):
    rows = [{"text": f"row {i}\u2028still row {i}", "label": "ab"[i % 2]} for i in range(6)]
    layouts = {
        "rows.json": json.dumps(rows, indent=1),
        "rows.jsonl": "\ufeff" + "".join(json.dumps(r, ensure_ascii=False) + "\n\n" for r in rows),
        "columns.json": json.dumps({"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}),
    }
    for name, content in layouts.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        columns, _ = task.load_columns(tmp_path / name, "json")
        assert columns == {"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}, name


@pytest.mark.parametrize("content, fragments", [
    ('{"text": "a", "label": 1}\n{"text": "b", "label": }\n', ("line 2 is not a JSON object",)),
    ('[{"text": "a", "label": 1},\n "just a string"]', ("data row 2 is a JSON str", "one object per entry")),
    ('[{"text": "a", "label": 1}', ("not valid JSON (line 1",)),
    ('{"text": ["a", "b"], "label": [1]}', ("different lengths", "'text' 2", "'label' 1")),
    ("[]", ("no data rows",)),
    ("\n\n", ("empty file",)),
])
def test_a_malformed_json_task_file_is_one_line_naming_the_file_and_the_place(tmp_path, content, fragments):
    src = tmp_path / "d.json"
    src.write_text(content)
    fails(tmp_path, src, "d.json", *fragments)


def test_a_json_task_file_that_is_not_utf8_names_the_byte(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_bytes(b'{"text": "caf\xe9", "label": 1}\n')
    fails(tmp_path, src, "d.jsonl", "not UTF-8", "0xe9")


def test_a_cp1252_csv_names_the_bad_byte_by_its_offset_and_line_in_the_file(tmp_path):
    # The CSV reader decodes in blocks and counts positions within its block; a byte past the
    # first block must still be found where it is in the file.
    good = "".join(f"a good sentence number {i},1\n" for i in range(30000))
    src = tmp_path / "reviews.csv"
    src.write_bytes(("text,label\n" + good + "caf\u00e9 au lait,0\n").encode("cp1252"))
    offset = len("text,label\n" + good) + 3
    fails(tmp_path, src, f"reviews.csv: not UTF-8 text (byte 0xe9 at offset {offset}, line 30002)")
