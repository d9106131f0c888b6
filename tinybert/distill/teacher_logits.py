"""Stage teacher-logits: the fine-tuned teacher's logits over the augmented training set, once.

The prediction step of task distillation needs only these logits from the teacher (z^T in
L_pred). Computing them here makes them a versioned artifact: every epoch and every ablation
that reuses the same augmented set and teacher reads them instead of running the teacher again.
The teacher runs in eval mode and in fp32, so the logits are the ones a live fp32 teacher gives,
up to the last bits (the live teacher runs the eager attention that exposes its scores). A
step under bf16/fp16 autocast (and ``one_step``, which runs the teacher live) sees its own
rounding instead.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from tinybert import task_defaults
from tinybert.batching import encode_task
from tinybert.config import TaskDistillConfig
from tinybert.errors import InputError
from tinybert.io import atomic_dir, atomic_file, content_sha256, iter_shards, read_json, read_manifest, write_json, write_parquet
from tinybert.models import batched_logits, load_classifier, load_tokenizer
from tinybert.runtime import pick_device
from tinybert.training import checkpoint_dir

LOGITS_FILE = "logits.parquet"
INFO_FILE = "info.json"
BATCH_SIZE = 128
LOGITS_TYPE = pa.list_(pa.float32())


def run(cfg: TaskDistillConfig, *, augmented_dir: Path, teacher_dir: Path, out_dir: Path) -> None:
    """Logits for every augmented row, one augmented part file at a time. Each finished part is
    kept under ``checkpoints/`` (atomically), so a killed run resumes at the first unfinished
    part: over a GLUE-sized augmented set (MNLI: millions of rows) this stage runs for hours.

    Where the prediction step never reads them (``one_step`` runs the teacher live; w/o TD has no
    teacher), only ``info.json`` is written, saying why: the stage stays in the DAG, and a full
    pass of the teacher over the augmented set is not spent on logits nobody reads."""
    unused = _why_unused(cfg)
    if unused is not None:
        print(f"[teacher-logits] not computed: {unused}", file=sys.stderr, flush=True)
        with atomic_dir(out_dir) as tmp:
            write_json(tmp / INFO_FILE, {"rows": 0, "not_computed": unused})
        return
    tokenizer = load_tokenizer(teacher_dir, "teacher")
    device = pick_device(cfg.prediction.device)
    teacher = load_classifier(teacher_dir, what="teacher").to(device)
    # Rows are all pairs or all single sentences (prepare-task), so the first part decides.
    first = next(iter_shards(augmented_dir, ["text_b"]))
    max_seq_len = task_defaults.max_seq_len(cfg.max_seq_len, pairs=first.column("text_b").null_count < first.num_rows)
    parts = _shard_digests(augmented_dir)
    teacher_digest = content_sha256(teacher_dir)
    # The device is in the key: CPU and GPU logits differ in their last bits, and one artifact
    # should come from one of them.
    work = checkpoint_dir("teacher-logits", max_seq_len, parts, teacher_digest, device.type, module=__name__)
    chunks = []
    for index, rows in enumerate(iter_shards(augmented_dir, ["text", "text_b", "label"])):
        done = work / f"part-{index:05d}.parquet"
        saved = _saved_part(done, rows.num_rows)
        if saved is not None:
            print(f"[teacher-logits] part {index + 1}/{len(parts)} done before, reused", file=sys.stderr, flush=True)
        else:
            data = encode_task(tokenizer, rows.to_pydict(), max_seq_len)
            logits = batched_logits(teacher, data, BATCH_SIZE, tokenizer.pad_token_id,
                                    progress=f"teacher-logits part {index + 1}/{len(parts)}")
            with atomic_file(done) as tmp:
                write_parquet(pa.table({"logits": pa.array(logits.tolist(), LOGITS_TYPE)}), tmp)
            saved = pq.read_table(done).column("logits")
        chunks.extend(saved.chunks)
    # Parquet reads a list's item back under another field name ("element"); cast to the type
    # written, so the artifact's bytes do not depend on whether its parts were resumed.
    logits = pa.concat_arrays(chunks).cast(LOGITS_TYPE)
    table = pa.table({"row": pa.array(range(len(logits)), pa.int64()), "logits": logits})
    with atomic_dir(out_dir) as tmp:
        write_parquet(table, tmp / LOGITS_FILE)
        write_json(tmp / INFO_FILE, {
            "rows": len(logits),
            "num_labels": len(logits[0]),
            "max_seq_len": max_seq_len,
            "augmented_shards": parts,
            "teacher": teacher_digest,
            # CPU and GPU logits differ in their last bits; "auto" leaves the choice to the machine.
            "device": device.type,
        })
    shutil.rmtree(work, ignore_errors=True)


def _why_unused(cfg: TaskDistillConfig) -> str | None:
    if cfg.two_steps:
        return None
    if not cfg.distillation:
        return "task_distill.distillation is false (w/o TD): the student learns from the labels"
    return "task_distill.one_step is true: the prediction loss reads the running teacher"


def _saved_part(path: Path, rows: int) -> pa.ChunkedArray | None:
    """A finished part's logits, or None when there is none or it cannot be trusted (unreadable,
    or another row count: a file cut short by a crash is recomputed, not fatal forever)."""
    if not path.is_file():
        return None
    try:
        logits = pq.read_table(path).column("logits")
    except (OSError, pa.ArrowException, KeyError):
        logits = None
    if logits is None or len(logits) != rows:
        path.unlink(missing_ok=True)
        return None
    return logits


def _shard_digests(augmented_dir: Path) -> list[str]:
    return [s["sha256"] for s in read_manifest(augmented_dir)["shards"]]


def load_teacher_logits(logits_dir: Path, *, rows: int, max_seq_len: int, augmented_dir: Path,
                        teacher_digest: str) -> torch.Tensor:
    """The cached logits as a (rows, C) tensor, refusing a cache made for other inputs: DVC keeps
    them in step, but a stage run by hand after the augmented set or the teacher (whose
    :func:`content_sha256` is ``teacher_digest``) changed must not distil from stale logits."""
    info_path = Path(logits_dir) / INFO_FILE
    if not info_path.is_file():
        raise InputError(f"{logits_dir}: no cached teacher logits; run the teacher-logits stage")
    info = read_json(info_path)
    if "not_computed" in info:
        raise InputError(f"{logits_dir}: no cached teacher logits, they were not computed "
                         f"({info['not_computed']}); rerun the teacher-logits stage with the current params")
    if info["rows"] != rows or info["max_seq_len"] != max_seq_len:
        raise InputError(
            f"{logits_dir}: cached teacher logits are for {info['rows']} rows at length {info['max_seq_len']}, "
            f"task-distill has {rows} rows at length {max_seq_len}; rerun the teacher-logits stage"
        )
    inputs = {"augmented_shards": ("augmented set", _shard_digests(augmented_dir)),
              "teacher": ("teacher", teacher_digest)}
    for key, (what, current) in inputs.items():
        if info.get(key) != current:
            raise InputError(f"{logits_dir}: cached teacher logits were computed for another {what}; "
                             "rerun the teacher-logits stage")
    table = pq.read_table(Path(logits_dir) / LOGITS_FILE)
    return torch.tensor(table.column("logits").to_pylist(), dtype=torch.float32)
