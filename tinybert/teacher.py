"""Stage teacher: fine-tune the backbone on the task's training split, or take a classifier
already fine-tuned on the task (``teacher.model``) as it is."""
from __future__ import annotations

import re
import sys
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
        return _take_fine_tuned(backbone, cfg, labels, out_dir)
    regression = labels["task_type"] == "regression"
    seed_everything(cfg.train.seed)
    tokenizer = load_tokenizer(backbone.model, "backbone.model")
    model = load_classifier(backbone.model, num_labels=labels["num_labels"], what="backbone.model")
    _name_outputs(model, labels)

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


def _name_outputs(model, labels: dict) -> None:
    """The task's loss and class names in the classifier's config, as every teacher carries them."""
    regression = labels["task_type"] == "regression"
    model.config.problem_type = "regression" if regression else "single_label_classification"
    if not regression:
        model.config.id2label = dict(enumerate(labels["label_names"]))
        model.config.label2id = {name: i for i, name in enumerate(labels["label_names"])}


# Strings whose word pieces must come out the same from both tokenizers: casing, accents,
# punctuation, Chinese characters (split one by one or not) and words outside a small vocabulary.
_PROBES = ("Hello, World! It's 2019.", "Naïve café AND résumé", "東京は日本の首都", "unbelievably [odd] text?")
_UNNAMED = re.compile(r"LABEL_\d+")  # transformers' name for an output nobody named


def _take_fine_tuned(backbone: BackboneConfig, cfg: TeacherConfig, labels: dict, out_dir: Path) -> None:
    """Publish a classifier fine-tuned elsewhere as the teacher, once it is known to fit the task
    (its classes, put in the task's order) and the student (it reads the backbone's word pieces:
    the general student learnt the backbone's vocabulary, and task distillation feeds both models
    the same token ids)."""
    what, path = "teacher.model", cfg.model
    print(f"[teacher] {what} is the teacher as it is: teacher.train and teacher.max_seq_len are not used",
          file=sys.stderr, flush=True)
    model = load_classifier(path, what=what)
    regression = labels["task_type"] == "regression"
    wanted = 1 if regression else labels["num_labels"]
    if model.config.num_labels != wanted:
        task = "a regression task (1 output)" if regression else f"{wanted} labels ({', '.join(labels['label_names'])})"
        raise InputError(f"{what}: {path} predicts {model.config.num_labels} labels; the task has {task}")
    report = {"fine_tuned_here": False, "source": str(path)}
    if not regression:
        theirs = [str(model.config.id2label[i]) for i in range(wanted)]
        ours = [str(name) for name in labels["label_names"]]
        order = _outputs_in_task_order(theirs, ours, what, path)
        if order != list(range(wanted)):
            # e.g. an MNLI teacher trained on `datasets`' order (entailment, neutral, contradiction)
            # for the reference's (contradiction, entailment, neutral): same classes, rows moved.
            head = model.classifier
            head.weight.data, head.bias.data = head.weight.data[order], head.bias.data[order]  # indexing copies
            report["outputs_reordered_from"] = theirs
    _name_outputs(model, labels)
    tokenizer, base = load_tokenizer(path, what), load_tokenizer(backbone.model, "backbone.model")
    if tokenizer.get_vocab() != base.get_vocab() or any(
            tokenizer(text)["input_ids"] != base(text)["input_ids"] for text in _PROBES):
        raise InputError(f"{what}: {path} does not split words as backbone.model ({backbone.model}) does "
                         "(another vocabulary or casing); the student reads the backbone's word pieces")
    # The backbone's tokenizer goes with it, so that the student ships with the tokenizer the
    # general student learnt (its maximum length and other settings too).
    publish_trained_model(out_dir, model, base, {}, report, None)


def _outputs_in_task_order(theirs: list[str], ours: list[str], what: str, path: str) -> list[int]:
    """For each of the task's classes, the model's output that predicts it. Names are compared
    when both sides name their classes with words, or both with numbers; otherwise (outputs
    ``LABEL_0``..., or words on one side and numbers on the other, as for GLUE's SST-2 labelled
    0 and 1) the classes are taken by index."""

    def number(name: str) -> float | None:
        try:
            return float(name)
        except ValueError:
            return None

    our_numbers, their_numbers = [number(n) for n in ours], [number(n) for n in theirs]
    if all(n is not None for n in our_numbers) and all(n is not None for n in their_numbers):
        ours_keyed, theirs_keyed = our_numbers, their_numbers
    elif (any(n is None for n in our_numbers) and all(n is None for n in their_numbers)
          and not all(_UNNAMED.fullmatch(n) for n in theirs)):
        ours_keyed, theirs_keyed = [n.lower() for n in ours], [n.lower() for n in theirs]
    else:
        return list(range(len(ours)))
    if sorted(ours_keyed) != sorted(theirs_keyed):
        raise InputError(f"{what}: {path} labels its outputs {theirs}, the task's classes are {ours}; "
                         "a teacher must predict the task's classes")
    return [theirs_keyed.index(key) for key in ours_keyed]
