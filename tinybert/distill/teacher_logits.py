"""Stage teacher-logits: the fine-tuned teacher's logits over the augmented training set, once.

The prediction step of task distillation needs only these logits from the teacher (z^T in
L_pred). Computing them here makes them a versioned artifact: every epoch and every ablation
that reuses the same augmented set and teacher reads them instead of running the teacher again.
The teacher runs in eval mode, so the logits are the ones the step would compute itself.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from tinybert import task_defaults
from tinybert.batching import encode_task
from tinybert.config import TaskDistillConfig
from tinybert.errors import InputError
from tinybert.io import atomic_dir, content_sha256, read_json, read_manifest, read_sharded, write_json, write_parquet
from tinybert.models import batched_logits, load_classifier, load_tokenizer
from tinybert.runtime import pick_device

LOGITS_FILE = "logits.parquet"
INFO_FILE = "info.json"
BATCH_SIZE = 128


def run(cfg: TaskDistillConfig, *, augmented_dir: Path, teacher_dir: Path, out_dir: Path) -> None:
    tokenizer = load_tokenizer(teacher_dir, "teacher")
    teacher = load_classifier(teacher_dir, what="teacher").to(pick_device(cfg.prediction.device))
    rows = read_sharded(augmented_dir, ["text", "text_b", "label"]).to_pydict()
    max_seq_len = task_defaults.max_seq_len(cfg.max_seq_len, pairs=any(t is not None for t in rows["text_b"]))
    data = encode_task(tokenizer, rows, max_seq_len)
    logits = batched_logits(teacher, data, BATCH_SIZE, tokenizer.pad_token_id, progress="teacher-logits")
    table = pa.table({
        "row": pa.array(range(len(data)), pa.int64()),
        "logits": pa.array(logits.tolist(), pa.list_(pa.float32())),
    })
    with atomic_dir(out_dir) as tmp:
        write_parquet(table, tmp / LOGITS_FILE)
        write_json(tmp / INFO_FILE, {
            "rows": len(data),
            "num_labels": logits.shape[1],
            "max_seq_len": max_seq_len,
            "augmented_shards": _shard_digests(augmented_dir),
            "teacher": content_sha256(teacher_dir),
        })


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
