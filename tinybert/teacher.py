"""Stage teacher: fine-tune the backbone on the task's training split, or take a classifier
already fine-tuned on the task (``teacher.model``) as it is."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from tinybert import task_defaults
from tinybert.batching import encode_task, read_task_labels, read_task_split
from tinybert.config import BackboneConfig, TeacherConfig
from tinybert.errors import InputError
from tinybert.io import content_sha256, file_sha256
from tinybert.models import load_classifier, load_tokenizer, model_dir, publish_trained_model
from tinybert.training import BatchSource, checkpoint_dir, seed_everything, train


def run(backbone: BackboneConfig, cfg: TeacherConfig, *, task_dir: Path, out_dir: Path) -> None:
    labels = read_task_labels(task_dir)
    if cfg.model is not None:
        return _take_fine_tuned(backbone, cfg.model, labels, out_dir)
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


# Strings whose word pieces must come out the same from both tokenizers: casing, accents,
# punctuation and a word outside a small vocabulary.
_PROBES = ("Hello, World! It's 2019.", "Naïve café AND résumé", "unbelievably [odd] text?")


def _take_fine_tuned(backbone: BackboneConfig, path: str, labels: dict, out_dir: Path) -> None:
    """Publish a classifier fine-tuned elsewhere as the teacher, unchanged, once it is known to
    fit the task (its number and order of labels) and the student (it reads the backbone's word
    pieces: the general student learnt the backbone's vocabulary, and task distillation feeds
    both models the same token ids)."""
    what = "teacher.model"
    model = load_classifier(path, what=what)
    tokenizer = load_tokenizer(path, what)
    regression = labels["task_type"] == "regression"
    wanted = 1 if regression else labels["num_labels"]
    if model.config.num_labels != wanted:
        task = "a regression task (1 output)" if regression else f"{wanted} labels ({', '.join(labels['label_names'])})"
        raise InputError(f"{what}: {path} predicts {model.config.num_labels} labels; the task has {task}")
    if not regression:
        theirs = [str(model.config.id2label[i]) for i in range(wanted)]
        ours = [str(name) for name in labels["label_names"]]
        # Names can be compared only where both sides have them: "LABEL_0"... is transformers' name
        # for an unnamed output, and a task labelled 0, 1... names its classes by the model's index.
        named = not all(re.fullmatch(r"LABEL_\d+", name) for name in theirs)
        numbered = all(re.fullmatch(r"-?\d+(\.\d*)?", name) for name in ours)
        if named and not numbered and [n.lower() for n in theirs] != [n.lower() for n in ours]:
            raise InputError(f"{what}: {path} labels its outputs {theirs}, the task's labels are {ours} "
                             "(in that order; list task.label_names in the model's order)")
        model.config.id2label = dict(enumerate(ours))
        model.config.label2id = {name: i for i, name in enumerate(ours)}
    model.config.problem_type = "regression" if regression else "single_label_classification"
    base = load_tokenizer(backbone.model, "backbone.model")
    if tokenizer.get_vocab() != base.get_vocab() or any(
            tokenizer(text)["input_ids"] != base(text)["input_ids"] for text in _PROBES):
        raise InputError(f"{what}: {path} does not split words as backbone.model ({backbone.model}) does "
                         "(another vocabulary or casing); the student reads the backbone's word pieces")
    publish_trained_model(out_dir, model, tokenizer, {}, {"fine_tuned_here": False, "source": str(path)}, None)
