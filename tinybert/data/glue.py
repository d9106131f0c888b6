"""The GLUE tasks' folders as distributed (``download_glue_data.py`` layout): one folder per
task with ``train.tsv`` and ``dev.tsv`` (MNLI: ``dev_matched.tsv`` and ``dev_mismatched.tsv``).

Each task's columns and label order follow the reference implementation's processors
(``task_distill.py``): for instance MNLI's labels are contradiction, entailment, neutral in
that order, so class ids match models fine-tuned with the reference. The headline metric is the
paper's (F1 for MRPC and QQP, Spearman for STS-B, MCC for CoLA, accuracy for the others); every
metric of the task type is reported. The files are read as
plain tab-separated lines without quote handling, as the reference reads them: GLUE sentences
contain unbalanced quotes. Lines with too few fields (a handful in QQP's train.tsv) are
skipped, as the reference skips them, and counted. So are rows with an empty text (two questions
in QQP's train.tsv), which the reference keeps: every other format refuses an empty text, and two
rows of 363,846 carry nothing to learn from or to augment.
"""
from __future__ import annotations

import codecs
import sys
from dataclasses import dataclass
from pathlib import Path

from tinybert.errors import InputError, not_utf8


@dataclass(frozen=True)
class GlueTask:
    text: str | int  # a header name, or a field index for CoLA, which has no header
    text_b: str | None
    label: str | int
    label_names: list[str] | None  # None: regression
    metric: str
    dev_files: tuple[str, ...] = ("dev.tsv",)
    header: bool = True


BINARY = ["0", "1"]
ENTAILMENT = ["entailment", "not_entailment"]
GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask(3, None, 1, BINARY, "mcc", header=False),
    "sst-2": GlueTask("sentence", None, "label", BINARY, "accuracy"),
    "mrpc": GlueTask("#1 String", "#2 String", "Quality", BINARY, "f1"),
    "sts-b": GlueTask("sentence1", "sentence2", "score", None, "spearman"),
    "qqp": GlueTask("question1", "question2", "is_duplicate", BINARY, "f1"),
    "mnli": GlueTask(
        "sentence1", "sentence2", "gold_label", ["contradiction", "entailment", "neutral"], "accuracy",
        dev_files=("dev_matched.tsv", "dev_mismatched.tsv"),
    ),
    "qnli": GlueTask("question", "sentence", "label", ENTAILMENT, "accuracy"),
    "rte": GlueTask("sentence1", "sentence2", "label", ENTAILMENT, "accuracy"),
    "wnli": GlueTask("sentence1", "sentence2", "label", BINARY, "accuracy"),
}
ALIASES = {"sst2": "sst-2", "stsb": "sts-b", "sts": "sts-b"}


def glue_task_name(folder: Path, configured: str | None) -> str:
    """The task named by ``task.glue_task``, else by the folder's name (``MNLI``, ``SST-2``...)."""
    name = (configured or folder.name).lower()
    name = ALIASES.get(name, name)
    if name not in GLUE_TASKS:
        raise InputError(
            f"{folder}: unknown GLUE task {name!r}; set task.glue_task to one of {', '.join(GLUE_TASKS)}"
        )
    return name


def split_name(file_name: str) -> str:
    """``dev.tsv`` and ``dev_matched.tsv`` are the dev split; ``dev_mismatched.tsv`` keeps its name."""
    stem = file_name.removesuffix(".tsv")
    return "dev" if stem in ("dev", "dev_matched") else stem


def read_glue_file(path: Path, task: GlueTask) -> tuple[list[int], list[str], list[str] | None, list[str]]:
    """(row numbers, texts, second texts or None, raw labels) of one GLUE TSV file."""
    if not path.is_file():
        raise InputError(f"{path}: GLUE file missing")
    raw = path.read_bytes()
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:  # decoded whole, so an error's offset is the byte's place in the file
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        raise not_utf8(path, err, bom) from None
    # Universal newlines, as reading in text mode would give.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    start = 0
    columns = [task.text, task.text_b, task.label]
    if task.header:
        if not lines:
            raise InputError(f"{path}: empty file; expected a header line")
        header = lines[0].rstrip("\r").split("\t")
        missing = [c for c in columns if c is not None and c not in header]
        if missing:
            raise InputError(f"{path}: column {missing[0]!r} not found; columns: {', '.join(header)}")
        columns = [None if c is None else header.index(c) for c in columns]
        start = 1
    need = max(c for c in columns if c is not None) + 1
    rows, texts, texts_b, labels, skipped, empty = [], [], [], [], 0, 0
    for number, line in enumerate(lines[start:], start=start):
        fields = line.rstrip("\r").split("\t")
        if len(fields) < need:
            skipped += 1
            continue
        if any(not fields[c].split() for c in columns[:2] if c is not None):
            empty += 1
            continue
        rows.append(number - start)  # the data row, from 0, as for the other formats
        texts.append(fields[columns[0]])
        if columns[1] is not None:
            texts_b.append(fields[columns[1]])
        labels.append(fields[columns[2]].strip())
    if skipped:
        print(f"[prepare-task] {path}: skipped {skipped} malformed lines (fewer than {need} fields)", file=sys.stderr)
    if empty:
        print(f"[prepare-task] {path}: skipped {empty} rows with an empty text", file=sys.stderr)
    return rows, texts, (texts_b if columns[1] is not None else None), labels
