"""Parameters set to ``auto`` take the reference implementation's per-task values (method.md)."""
import pytest

from tinybert import task_defaults


@pytest.mark.parametrize("glue_task, expected", [
    ("sst-2", 20), ("mnli", 10), ("qqp", 10), ("qnli", 20), ("cola", 30), ("mrpc", 30), ("sts-b", 30), ("rte", 30),
    (None, 30),  # data that is not a GLUE task: the reference's default
])
def test_auto_n_aug_is_the_references_value_for_the_task(glue_task, expected):
    assert task_defaults.n_aug("auto", {"glue_task": glue_task}) == expected


def test_a_number_is_used_as_given():
    assert task_defaults.n_aug(4, {"glue_task": "mnli"}) == 4
    assert task_defaults.max_seq_len(32, pairs=True) == 32


def test_auto_length_is_128_for_sentence_pairs_and_64_for_single_sentences():
    assert task_defaults.max_seq_len("auto", pairs=True) == 128
    assert task_defaults.max_seq_len("auto", pairs=False) == 64
