import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tinybert import sharding
from tinybert.augment import pipeline, stage
from tinybert.config import AugmentConfig
from tinybert.errors import InputError
from tinybert.io import content_sha256, read_sharded

from .conftest import TINY_VECTORS, make_mlm


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory, tokenizer):
    # k=1 below: every single-piece eligible word's only candidate is "dog".
    folder = tmp_path_factory.mktemp("mlm")
    make_mlm(tokenizer, {"dog": 100.0}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def glove_file(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("".join(f"{w} {v[0]} {v[1]}\n" for w, v in TINY_VECTORS.items()))
    return str(path)


def write_task(folder, rows, pairs=False, glue_task=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.json").write_text(json.dumps({"glue_task": glue_task, "text_b": pairs}))
    columns = {
        "text": [r[0] for r in rows],
        "text_b": pa.array([r[1] for r in rows], pa.string()),
        "label": pa.array([r[2] for r in rows], pa.float64()),
        "id": pa.array([r[3] for r in rows], pa.int64()),
    }
    if not pairs:
        del columns["text_b"]
    pq.write_table(pa.table(columns), folder / "train.parquet")
    return folder


SINGLE = [
    ("The cat sat on the unbelievably soft mat.", None, 1.0, 10),
    ("42 !!", None, 0.0, 11),
    ("Stupid zyxqv.", None, 0.5, 12),
]


def run(tmp_path, glove_file, mlm_dir, rows=SINGLE, pairs=False, **overrides):
    cfg = AugmentConfig(**{"glove": glove_file, "k": 1, "p_t": 1.0, "n_aug": 5, **overrides})
    task = write_task(tmp_path / "task", rows, pairs)
    stage.run(cfg, task_dir=task, mlm_dir=mlm_dir, out_dir=tmp_path / "out")
    return read_sharded(tmp_path / "out"), json.loads((tmp_path / "out" / "manifest.json").read_text())


def test_stage_writes_original_then_hand_computed_variants(tmp_path, glove_file, mlm_dir):
    table, manifest = run(tmp_path, glove_file, mlm_dir)
    assert table.schema == stage.SCHEMA
    assert table.to_pylist() == [
        dict(variant=0, source_id=10, text="The cat sat on the unbelievably soft mat.", text_b=None, label=1.0, is_original=True),
        dict(variant=1, source_id=10, text="the dog dog on the incredibly dog dog .", text_b=None, label=1.0, is_original=False),
        dict(variant=0, source_id=11, text="42 !!", text_b=None, label=0.0, is_original=True),
        # Nothing to replace, but the words joined are not yet in the output: the reference keeps them.
        dict(variant=1, source_id=11, text="42 ! !", text_b=None, label=0.0, is_original=False),
        dict(variant=0, source_id=12, text="Stupid zyxqv.", text_b=None, label=0.5, is_original=True),
        dict(variant=1, source_id=12, text="dog zyxqv .", text_b=None, label=0.5, is_original=False),
    ]
    assert manifest["rows"] == 6 and set(stage.MANIFEST_KEYS) <= manifest.keys()
    assert {k: manifest[k] for k in ("p_t", "n_aug", "k", "seed", "source_rows", "generated_rows")} == \
        dict(p_t=1.0, n_aug=5, k=1, seed=42, source_rows=3, generated_rows=3)
    assert (manifest["words_mlm"], manifest["words_glove"], manifest["words_itself"]) == (5, 1, 1)
    # the MLM that made the candidates is recorded by content, not by a setting the stage never reads
    assert manifest["mlm_sha256"] == content_sha256(mlm_dir) and "backbone" not in manifest


def test_pairs_pair_each_sentence_variants_with_the_original_other(tmp_path, glove_file, mlm_dir):
    rows = [("A cat.", "An unbelievably soft mat!", 2.0, 7)]
    table, _ = run(tmp_path, glove_file, mlm_dir, rows=rows, pairs=True)
    assert [(r["text"], r["text_b"], r["is_original"]) for r in table.to_pylist()] == [
        ("A cat.", "An unbelievably soft mat!", True),
        ("a dog .", "An unbelievably soft mat!", False),
        ("A cat.", "an incredibly dog dog !", False),
    ]
    assert table.column("label").to_pylist() == [2.0] * 3


@pytest.mark.parametrize("glue_task, n_aug", [("mnli", 10), (None, 30)])
def test_auto_n_aug_takes_the_references_value_for_the_task(tmp_path, glove_file, mlm_dir, glue_task, n_aug):
    cfg = AugmentConfig(glove=glove_file, k=5, p_t=0.5, n_aug="auto")
    rows = [("A cat and a dog sat on the unbelievably soft mat with another cat and a dog today!", None, 1.0, 1)]
    task = write_task(tmp_path / "task", rows, glue_task=glue_task)
    stage.run(cfg, task_dir=task, mlm_dir=mlm_dir, out_dir=tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["n_aug"] == n_aug
    assert 6 < manifest["rows"] <= n_aug + 1  # more than a small N_a gives: up to N_a + 1 rows


def test_p_zero_adds_to_each_original_only_its_words_joined_when_written_otherwise(tmp_path, glove_file, mlm_dir):
    table, manifest = run(tmp_path, glove_file, mlm_dir, p_t=0.0, k=5, n_aug=20)
    assert [(r["text"], r["is_original"]) for r in table.to_pylist()] == [
        ("The cat sat on the unbelievably soft mat.", True), ("the cat sat on the unbelievably soft mat .", False),
        ("42 !!", True), ("42 ! !", False), ("Stupid zyxqv.", True), ("stupid zyxqv .", False)]
    assert manifest["generated_rows"] == 3
    rows = [("the cat sat .", None, 1.0, 1)]  # already written as its words joined: nothing new
    table, manifest = run(tmp_path / "joined", glove_file, mlm_dir, rows=rows, p_t=0.0, k=5, n_aug=20)
    assert table.column("text").to_pylist() == ["the cat sat ."] and manifest["generated_rows"] == 0


def test_max_examples_augments_the_first_rows_and_keeps_the_rest_as_originals(tmp_path, glove_file, mlm_dir):
    table, manifest = run(tmp_path, glove_file, mlm_dir, max_examples=2, shard_rows=2, p_t=0.5, k=5, n_aug=10)
    generated = [sid for sid, orig in zip(table.column("source_id").to_pylist(), table.column("is_original").to_pylist()) if not orig]
    assert generated and set(generated) <= {10, 11}  # only the first two rows are augmented
    originals = [sid for sid, orig in zip(table.column("source_id").to_pylist(), table.column("is_original").to_pylist()) if orig]
    assert originals == sorted(originals) and len(originals) == manifest["source_rows"] > 2
    assert manifest["augmented_rows"] == 2
    assert manifest["rows"] == 14  # first shard: 2 originals and 11 new rows (one is "42 ! !"); then 1 original


def test_output_bytes_do_not_depend_on_shard_size_or_worker_count(tmp_path, glove_file, mlm_dir, monkeypatch):
    rows = SINGLE + [("A cat and a dog!", None, 1.0, 13), ("Dogs chase cars.", None, 0.0, 14)]
    settings = dict(rows=rows, p_t=0.5, k=5, n_aug=6, max_examples=4)
    monkeypatch.setattr(sharding, "PART_ROWS", 7)  # several output files, cut across shards
    whole, _ = run(tmp_path / "a", glove_file, mlm_dir, shard_rows=100, **settings)
    small, _ = run(tmp_path / "b", glove_file, mlm_dir, shard_rows=2, **settings)
    parallel, manifest = run(tmp_path / "c", glove_file, mlm_dir, shard_rows=1, workers=2, **settings)
    assert whole.equals(small) and small.equals(parallel)
    assert len(manifest["shards"]) == -(-whole.num_rows // 7) > 1
    files = lambda folder: {p.name: p.read_bytes() for p in (tmp_path / folder / "out").iterdir()}  # noqa: E731
    assert files("a") == files("b") == files("c")  # byte-identical, manifest included


def test_a_killed_run_resumes_from_its_finished_shards(tmp_path, glove_file, mlm_dir, monkeypatch):
    rows = SINGLE + [("A cat and a dog!", None, 1.0, 13)]
    reference, _ = run(tmp_path / "ref", glove_file, mlm_dir, rows=rows, shard_rows=1, p_t=0.5, k=5, n_aug=6)
    real, calls = stage.augment_shard, []

    def dies_on_third_shard(job, shard):
        calls.append(shard.index)
        if shard.index == 2 and calls.count(2) == 1:
            raise KeyboardInterrupt  # as if the process were stopped mid-run
        return real(job, shard)

    monkeypatch.setattr(stage, "augment_shard", dies_on_third_shard)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "x", glove_file, mlm_dir, rows=rows, shard_rows=1, p_t=0.5, k=5, n_aug=6)
    assert not (tmp_path / "x" / "out").exists()
    resumed, _ = run(tmp_path / "x", glove_file, mlm_dir, rows=rows, shard_rows=1, p_t=0.5, k=5, n_aug=6)
    assert calls == [0, 1, 2, 2, 3]  # shards 0 and 1 were not recomputed
    assert resumed.equals(reference)


def test_output_does_not_depend_on_chunking(tmp_path, glove_file, mlm_dir, monkeypatch):
    rows = SINGLE + [("A cat and a dog!", "Soft mats.", 1.0, 13)]
    settings = dict(rows=rows, pairs=True, p_t=0.5, k=5, n_aug=10, batch_size=2)
    whole, _ = run(tmp_path / "a", glove_file, mlm_dir, **settings)
    monkeypatch.setattr(stage, "CHUNK_EXAMPLES", 1)
    # a chunk never holds fewer examples than half a batch: with the default batch both runs were one chunk
    assert stage.examples_per_chunk(2) == 1
    one_by_one, _ = run(tmp_path / "b", glove_file, mlm_dir, **settings)
    assert whole.equals(one_by_one)
    assert whole.num_rows > len(rows)


def test_a_shard_decodes_only_the_row_groups_holding_its_rows(tmp_path, glove_file, mlm_dir, monkeypatch):
    rows = [(f"the cat number {i}", None, float(i % 2), i) for i in range(10)]
    task = write_task(tmp_path / "task", rows)
    pq.write_table(pq.read_table(task / "train.parquet"), task / "train.parquet", row_group_size=2)
    read = []
    real = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups",
                        lambda self, groups, **kw: read.append(list(groups)) or real(self, groups, **kw))
    cfg = AugmentConfig(glove=glove_file, k=1, p_t=1.0, n_aug=2, shard_rows=3)
    stage.run(cfg, task_dir=task, mlm_dir=mlm_dir, out_dir=tmp_path / "out")
    # shards of 3 rows over row groups of 2: [0,3) [3,6) [6,9) [9,10)
    assert read == [[0, 1], [1, 2], [3, 4], [4]]
    assert read_sharded(tmp_path / "out").column("source_id").unique().to_pylist() == list(range(10))


def test_null_text_is_an_input_error_naming_the_file(tmp_path, glove_file, mlm_dir):
    (tmp_path / "task").mkdir()
    table = pa.table({"text": pa.array(["a cat", None], pa.string()), "label": [1.0, 0.0], "id": [1, 2]})
    pq.write_table(table, tmp_path / "task" / "train.parquet")
    with pytest.raises(InputError, match=r"train.parquet: column text has 1 null"):
        stage.run(AugmentConfig(glove=glove_file), task_dir=tmp_path / "task", mlm_dir=mlm_dir,
                  out_dir=tmp_path / "out")


def test_missing_training_set_is_an_input_error(tmp_path, glove_file, mlm_dir):
    (tmp_path / "task").mkdir()
    with pytest.raises(InputError, match="train.parquet"):
        stage.run(AugmentConfig(glove=glove_file), task_dir=tmp_path / "task", mlm_dir=mlm_dir,
                  out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_mlm_folder_is_an_input_error(tmp_path, glove_file):
    task = write_task(tmp_path / "task", SINGLE)
    with pytest.raises(InputError, match="nomlm"):
        stage.run(AugmentConfig(glove=glove_file), task_dir=task, mlm_dir=tmp_path / "nomlm",
                  out_dir=tmp_path / "out")


def test_non_numeric_label_is_an_input_error(tmp_path, glove_file, mlm_dir):
    (tmp_path / "task").mkdir()
    pq.write_table(pa.table({"text": ["a cat"], "label": ["pos"], "id": [1]}), tmp_path / "task" / "train.parquet")
    with pytest.raises(InputError, match="label"):
        stage.run(AugmentConfig(glove=glove_file), task_dir=tmp_path / "task", mlm_dir=mlm_dir,
                  out_dir=tmp_path / "out")


def test_failure_mid_run_leaves_no_output_folder(tmp_path, glove_file, mlm_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline, "augment_sentence", broken)
    with pytest.raises(RuntimeError, match="boom"):
        run(tmp_path, glove_file, mlm_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["glove.txt", "task"]


def test_failure_keeps_the_previous_output(tmp_path, glove_file, mlm_dir, monkeypatch):
    run(tmp_path, glove_file, mlm_dir)
    before = read_sharded(tmp_path / "out")
    monkeypatch.setattr(pipeline, "augment_sentence", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        run(tmp_path, glove_file, mlm_dir, p_t=0.0)
    assert read_sharded(tmp_path / "out").equals(before)


def test_the_shared_tokenizer_is_settled_before_shard_threads_share_it(mlm_dir):
    # Its first call turns off the folder's truncation and padding, taking the Rust state mutably;
    # a shard thread encoding meanwhile would fail with "Already borrowed".
    stage._LOADED.clear()
    backend = stage._models(AugmentConfig(), mlm_dir).tokenizer.backend_tokenizer
    assert (backend.truncation, backend.padding) == (None, None)


def test_auto_mlm_batches_are_larger_on_a_gpu_and_a_set_value_is_kept():
    assert stage.mlm_batch(AugmentConfig(), "cpu") == (128, 16384)
    assert stage.mlm_batch(AugmentConfig(), "cuda") == (512, 65536)
    assert stage.mlm_batch(AugmentConfig(batch_size=7, batch_tokens=4096), "cuda") == (7, 4096)
    assert stage.mlm_batch(AugmentConfig(batch_size=7), "cpu") == (7, 16384)


def test_the_stage_batches_the_mlm_as_auto_resolves_for_the_device_it_runs_on(glove_file, mlm_dir):
    import torch

    stage._LOADED.clear()
    mlm = stage._models(AugmentConfig(glove=glove_file), mlm_dir).mlm
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert (mlm.batch_size, mlm.batch_tokens) == stage.AUTO_MLM_BATCH[device]


def test_progress_counts_the_examples_augmented_not_the_rows_only_copied(tmp_path, glove_file, mlm_dir):
    rows = [(f"the cat number {i}", None, float(i % 2), i) for i in range(5)]
    cfg = AugmentConfig(glove=glove_file, k=1, n_aug=2, max_examples=3, shard_rows=2)
    job = stage.plan(cfg, task_dir=write_task(tmp_path / "task", rows), mlm_dir=mlm_dir)
    assert (job.unit, job.work) == ("examples", (2, 1, 0))
