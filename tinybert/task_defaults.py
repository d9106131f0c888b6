"""The reference implementation's per-task defaults, for parameters set to ``auto``.

The reference hard-codes them per GLUE task and users of other data silently get its fallback;
here ``auto`` resolves them from the task folder's ``labels.json`` (its GLUE task and whether
examples are sentence pairs), and each stage records the value it used.
"""
from __future__ import annotations

# N_a, new sentences per sentence (method.md, "Per-task N_a in the reference"); any other task,
# GLUE or not, gets the reference's default.
REFERENCE_N_AUG = {"sst-2": 20, "mnli": 10, "qqp": 10, "qnli": 20}
OTHER_N_AUG = 30
# Maximum length in word pieces: 128, or 64 for single-sentence tasks (reference defaults).
PAIR_LENGTH, SINGLE_LENGTH = 128, 64


def n_aug(value: int | str, labels: dict) -> int:
    if value != "auto":
        return int(value)
    return REFERENCE_N_AUG.get(labels.get("glue_task") or "", OTHER_N_AUG)


def max_seq_len(value: int | str, pairs: bool) -> int:
    if value != "auto":
        return int(value)
    return PAIR_LENGTH if pairs else SINGLE_LENGTH
