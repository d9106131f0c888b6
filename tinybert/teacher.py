"""Stage teacher: fine-tune the backbone on the task's training split."""
from __future__ import annotations

from pathlib import Path

import torch

from tinybert import task_defaults
from tinybert.batching import encode_task, read_task_labels, read_task_split
from tinybert.config import BackboneConfig, TeacherConfig
from tinybert.io import content_sha256, file_sha256
from tinybert.models import load_classifier, load_tokenizer, model_dir, publish_trained_model
from tinybert.training import BatchSource, checkpoint_dir, seed_everything, train


def run(backbone: BackboneConfig, cfg: TeacherConfig, *, task_dir: Path, out_dir: Path) -> None:
    labels = read_task_labels(task_dir)
    regression = labels["task_type"] == "regression"
    seed_everything(cfg.train.seed)
    tokenizer = load_tokenizer(backbone.model, "backbone.model")
    model = load_classifier(backbone.model, num_labels=labels["num_labels"], what="backbone.model")
    model.config.problem_type = "regression" if regression else "single_label_classification"
    if not regression:
        model.config.id2label = dict(enumerate(labels["label_names"]))
        model.config.label2id = {name: i for i, name in enumerate(labels["label_names"])}

    max_seq_len = task_defaults.max_seq_len(cfg.max_seq_len, pairs=bool(labels.get("text_b")))
    data = encode_task(tokenizer, read_task_split(Path(task_dir) / "train.parquet"), max_seq_len)
    label_dtype = torch.float32 if regression else torch.long
    pad = tokenizer.pad_token_id
    batches = BatchSource(len(data), lambda idx: data.collate(idx, pad_id=pad, label_dtype=label_dtype), data.lengths)

    def loss_fn(batch: dict, step: int):
        return model(**batch).loss, {}

    ckpt = checkpoint_dir("teacher", cfg.model_dump(), content_sha256(model_dir(backbone.model, "backbone.model")), labels,
                          file_sha256(Path(task_dir) / "train.parquet"), module=__name__)
    log = train(
        name="teacher",
        modules={"model": model},
        param_groups=[{"params": [p for p in model.parameters() if p.requires_grad]}],
        loss_fn=loss_fn,
        batches=batches,
        schedule=cfg.train,
        checkpoint_to=ckpt,
    )
    report = {"train_examples": len(data), "max_seq_len": max_seq_len, "steps": len(log), "final_loss": log[-1]["loss"]}
    publish_trained_model(out_dir, model, tokenizer, {"train_log": log}, report, ckpt)
