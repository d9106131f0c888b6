"""Augment stage: the task's training set -> the set augmented by Algorithm 1.

Input: ``task_dir/train.parquet`` (``text``, optional ``text_b``, ``label`` float64, ``id`` int64)
and the masked-LM folder ``mlm_dir`` (model + tokenizer). Each example yields its original row
first, then the distinct generated sentences, each with the original label. For a pair, the
first sentence's variants are paired with the original second sentence, then the second
sentence's variants with the original first one (not the reference's pairing with the *last*
variant of the first sentence, method.md).

The training set is cut into shards of ``shard_rows`` input rows, each augmented independently
(:mod:`tinybert.sharding`: resumable, atomic per shard, local processes or Prefect tasks). Output:
parquet files of a fixed number of rows with :data:`SCHEMA`, and ``manifest.json`` with the
parameters and counts in :data:`MANIFEST_KEYS`. The files, byte for byte, do not depend on
``shard_rows`` or the number of workers.
"""
from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from tinybert.assets import resolve
from tinybert.augment.glove import GloveNeighbours, load_glove
from tinybert.augment.mlm import MlmCandidates, sentence_pieces
from tinybert.augment.pipeline import AugmentTools, augmented_chunks
from tinybert.augment.words import load_stopwords
from tinybert.config import AugmentConfig
from tinybert.errors import InputError
from tinybert import task_defaults
from tinybert.io import content_sha256, file_sha256, read_json, read_rows
from tinybert.sharding import (
    Progress, Shard, ShardJob, ShardProgress, plan_shards, publish_shards, run_shards,
)
from tinybert.training import checkpoint_dir


SCHEMA = pa.schema([
    ("source_id", pa.int64()),  # the training row's id
    ("variant", pa.int32()),  # 0: the original row; 1..: generated rows of that example, in order
    ("text", pa.string()),
    ("text_b", pa.string()),
    ("label", pa.float64()),
    ("is_original", pa.bool_()),
])
MANIFEST_KEYS = (
    "p_t", "n_aug", "k", "seed", "glove", "glove_limit", "max_examples", "precision", "mlm_sha256",
    "source_rows", "augmented_rows", "source_sentences", "original_rows", "generated_rows",
    "words_mlm", "words_glove", "words_itself",
)
# Examples whose candidate sets are computed together: enough MLM inputs to fill several
# batches, few enough that progress is reported often.
CHUNK_EXAMPLES = 128
# augment.batch_size and batch_tokens for `auto`, by the device the MLM runs on. The CPU's are the
# setting the default profile was measured with. A GPU is idle between small batches: the
# H100/H200 figures (benchmarks/README.md) used 512 inputs a batch, and 65,536 tokens let 512
# inputs of up to 128 tokens through (the MLM input holds the sentence twice).
AUTO_MLM_BATCH = {"cpu": (128, 16384), "cuda": (512, 65536)}


def mlm_batch(cfg: AugmentConfig, device: str) -> tuple[int, int]:
    """(inputs, padded tokens) per MLM forward on ``device``, ``auto`` resolved. The output does
    not depend on them, so each process resolves them for its own device."""
    inputs, tokens = AUTO_MLM_BATCH[device]
    return (inputs if cfg.batch_size == "auto" else cfg.batch_size,
            tokens if cfg.batch_tokens == "auto" else cfg.batch_tokens)


def examples_per_chunk(batch_size: int) -> int:
    """Examples whose candidates are computed together: a chunk yields about 9 MLM inputs per
    example (movie reviews), so large GPU batches need larger chunks to be full."""
    return max(CHUNK_EXAMPLES, batch_size // 2)


def check_train(task_dir: Path) -> int:
    """The training set's row count, after checking its columns and text; reads one column, one
    row group at a time, so memory does not grow with the set."""
    path = Path(task_dir) / "train.parquet"
    if not path.is_file():
        raise InputError(f"{path}: training set not found; run `dvc repro prepare-task` first")
    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:
        raise InputError(f"{path}: not a readable parquet file: {err}") from None
    schema = parquet.schema_arrow
    missing = [c for c in ("text", "label", "id") if c not in schema.names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; has {', '.join(schema.names)}")
    label_type = schema.field("label").type
    if not (pa.types.is_floating(label_type) or pa.types.is_integer(label_type)):
        raise InputError(f"{path}: column label must be numeric (float64), got {label_type}")
    if parquet.metadata.num_rows == 0:
        raise InputError(f"{path}: no rows to augment")
    nulls = sum(parquet.read_row_group(i, columns=["text"]).column("text").null_count
                for i in range(parquet.metadata.num_row_groups))
    if nulls:
        raise InputError(f"{path}: column text has {nulls} null value(s)")
    return parquet.metadata.num_rows


def load_mlm(mlm_dir: Path):
    from transformers import AutoModelForMaskedLM

    from tinybert.models import load_pretrained, load_tokenizer

    mlm_dir = Path(mlm_dir)
    if not mlm_dir.is_dir():
        raise InputError(f"{mlm_dir}: masked-LM folder not found; run the mlm stage first")
    tokenizer = load_tokenizer(mlm_dir, "masked-LM")  # the same checks as every other model folder
    model = load_pretrained(AutoModelForMaskedLM, mlm_dir, what="masked-LM")
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"{mlm_dir}: needs a fast tokenizer (tokenizer.json) for basic words and word ids")
    return model, tokenizer


def example_rows(text: str, text_b: str | None, variants: list[str], variants_b: list[str] | None):
    """(text, text_b, is_original) rows of one example: the original, then each sentence's variants
    paired with the *original* other sentence."""
    yield variants[0], text_b, True
    for variant in variants[1:]:
        yield variant, text_b, False
    for variant in (variants_b or [])[1:]:
        yield text, variant, False


_LOADED: dict[tuple, AugmentTools] = {}  # the MLM, GloVe index and stop words, loaded once per process
_LOADING = threading.Lock()  # shards may run in threads (Prefect); load the models once


def _models(cfg: AugmentConfig, mlm_dir: Path) -> AugmentTools:
    key = (str(mlm_dir), cfg.glove, cfg.glove_limit, cfg.k, cfg.batch_size, cfg.batch_tokens, cfg.precision)
    with _LOADING:
        return _LOADED[key] if key in _LOADED else _load_models(key, cfg, mlm_dir)


def _load_models(key: tuple, cfg: AugmentConfig, mlm_dir: Path) -> AugmentTools:
    import torch

    from tinybert.heap import fix_mmap_threshold

    fix_mmap_threshold()  # else memory creeps up over a long run (tinybert/heap.py)
    model, tokenizer = load_mlm(mlm_dir)
    # Threads share the tokenizer; its first call changes its Rust state (truncation and padding
    # off), which fails a thread encoding at the same moment ("Already borrowed"). Made here,
    # under the lock, that change leaves the shards' calls nothing to change.
    sentence_pieces(tokenizer, [["warm-up"]])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch_size, batch_tokens = mlm_batch(cfg, device)
    _LOADED.clear()  # one configuration per process
    _LOADED[key] = AugmentTools(
        tokenizer,
        MlmCandidates(model, tokenizer, k=cfg.k, batch_size=batch_size, batch_tokens=batch_tokens,
                      device=device, precision=cfg.precision),
        GloveNeighbours(load_glove(cfg.glove, cfg.glove_limit), k=cfg.k, device=device),
        load_stopwords(),
    )
    return _LOADED[key]


class AugmentJobContext(NamedTuple):
    """What every shard of one run shares (:attr:`ShardJob.context`)."""

    cfg: AugmentConfig  # with ``n_aug`` resolved
    task_dir: Path
    mlm_dir: Path
    mlm_sha256: str  # hashed once, in plan: the checkpoint's key and the manifest both record it


def augment_shard(job: ShardJob, shard: Shard) -> tuple[pa.Table, dict]:
    """Rows ``shard.start:shard.stop`` of the training set, augmented: a pure function of those
    rows, the models and the seed (each example's generator comes from (seed, id))."""
    cfg, task_dir, mlm_dir, _ = job.context
    models = _models(cfg, mlm_dir)
    table = read_rows(Path(task_dir) / "train.parquet", shard.start, shard.stop)
    texts = table.column("text").to_pylist()
    texts_b = table.column("text_b").to_pylist() if "text_b" in table.column_names else [None] * len(texts)
    labels = table.column("label").cast(pa.float64()).to_pylist()
    ids = table.column("id").cast(pa.int64()).to_pylist()
    # Only the first max_examples rows of the whole set are augmented (a compute budget); the
    # others are kept as originals, so the student still sees the whole training set.
    limit = len(texts) if cfg.max_examples is None else max(0, min(cfg.max_examples - shard.start, len(texts)))
    columns: dict[str, list] = {name: [] for name in SCHEMA.names}

    def add(r: int, variant: int, text: str, text_b: str | None, is_original: bool) -> None:
        for name, value in zip(SCHEMA.names, (ids[r], variant, text, text_b, labels[r], is_original)):
            columns[name].append(value)

    stats: Counter = Counter()
    progress = ShardProgress("augment", shard, limit, "examples")
    examples = list(zip(texts[:limit], texts_b[:limit]))
    for rows, variants in augmented_chunks(examples, ids, models, p_t=cfg.p_t, n_aug=cfg.n_aug, seed=cfg.seed,
                                           chunk_examples=examples_per_chunk(models.mlm.batch_size), stats=stats):
        for r, (first, second) in zip(rows, variants):
            for v, (text, text_b, is_original) in enumerate(example_rows(texts[r], texts_b[r], first, second)):
                add(r, v, text, text_b, is_original)
        progress.advance(len(rows))
    for r in range(limit, len(texts)):
        add(r, 0, texts[r], texts_b[r], True)
    sentences = limit + sum(b is not None for b in texts_b[:limit])
    return pa.table(columns, schema=SCHEMA), {
        "sentences": sentences, "augmented_rows": limit, "source_rows": len(texts),
        "words_mlm": stats["mlm"], "words_glove": stats["glove"], "words_itself": stats["itself"],
    }


def plan(cfg: AugmentConfig, *, task_dir: Path, mlm_dir: Path, **_outs) -> ShardJob:
    """Check the inputs and split the training set into shards of ``cfg.shard_rows`` rows."""
    num_rows = check_train(task_dir)
    # `auto` becomes the task's number once, here: shards and the manifest read it from the job.
    cfg = cfg.model_copy(update={"n_aug": resolved_n_aug(cfg, task_dir)})
    # A bad MLM folder or GloVe file fails here, before any worker starts; shards computed in
    # this process then reuse the loaded models.
    _models(cfg, mlm_dir)
    mlm_sha256 = content_sha256(mlm_dir)
    fingerprint = (cfg.model_dump(exclude={"workers", "batch_size", "batch_tokens"}), file_sha256(Path(task_dir) / "train.parquet"),
                   mlm_sha256, content_sha256(resolve(cfg.glove, "augment.glove")))
    shards = tuple(plan_shards(num_rows, cfg.shard_rows))
    return ShardJob(
        compute="tinybert.augment.stage:augment_shard",
        context=AugmentJobContext(cfg, Path(task_dir), Path(mlm_dir), mlm_sha256),
        work_dir=checkpoint_dir("augment", fingerprint, module=__name__),
        shards=shards,
        unit="examples",
        work=tuple(augmented_sentences(cfg, shard) for shard in shards),
    )


def resolved_n_aug(cfg: AugmentConfig, task_dir: Path) -> int:
    """``augment.n_aug``, or for ``auto`` the reference's value for the task (recorded in the manifest)."""
    labels = Path(task_dir) / "labels.json"
    return task_defaults.n_aug(cfg.n_aug, read_json(labels) if cfg.n_aug == "auto" and labels.is_file() else {})


def augmented_sentences(cfg: AugmentConfig, shard: Shard) -> int:
    """Input rows of ``shard`` that get augmented (the progress unit; pairs count once)."""
    if cfg.max_examples is None:
        return shard.stop - shard.start
    return max(0, min(shard.stop, cfg.max_examples) - shard.start)


def publish(cfg: AugmentConfig, job: ShardJob, results: list[dict], out_dir: Path) -> dict:
    total = lambda key: sum(r[key] for r in results)  # noqa: E731
    metadata = dict(
        p_t=cfg.p_t, n_aug=job.context.cfg.n_aug, k=cfg.k, seed=cfg.seed, glove=cfg.glove, glove_limit=cfg.glove_limit,
        max_examples=cfg.max_examples, precision=cfg.precision, mlm_sha256=job.context.mlm_sha256,
        source_rows=total("source_rows"), augmented_rows=total("augmented_rows"), source_sentences=total("sentences"),
        original_rows=total("source_rows"), generated_rows=total("rows") - total("source_rows"),
        words_mlm=total("words_mlm"), words_glove=total("words_glove"), words_itself=total("words_itself"),
    )
    return publish_shards(job, out_dir, results, SCHEMA, metadata)


def run(cfg: AugmentConfig, *, task_dir: Path, mlm_dir: Path, out_dir: Path) -> None:
    """Augment ``task_dir/train.parquet`` into ``out_dir``, shard by shard, with ``cfg.workers``
    local processes. An interrupted run resumes from the shards it finished.

    The MLM folder carries its own tokenizer (the backbone's when the mlm stage built it), so the
    backbone setting is not read here; the manifest records the digest of the MLM folder used.
    """
    job = plan(cfg, task_dir=task_dir, mlm_dir=mlm_dir)
    results = run_shards(job, cfg.workers, Progress.of("augment", job))
    publish(cfg, job, results, out_dir)
