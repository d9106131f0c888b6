"""Collation: ragged examples become one padded batch, exactly as padding them one by one would."""
from __future__ import annotations

import random

import pytest
import torch

from tinybert.batching import Encoded


def _padded_one_by_one(rows: list[list[int]], pad: int, width: int | None = None) -> list[list[int]]:
    width = max(len(r) for r in rows) if width is None else width
    return [r + [pad] * (width - len(r)) for r in rows]


def test_a_batch_is_its_examples_padded_to_the_longest_with_a_mask():
    rng = random.Random(0)
    ids = [[rng.randrange(1, 30000) for _ in range(rng.randrange(0, 40))] for _ in range(200)]
    types = [[rng.randrange(2) for _ in row] for row in ids]
    data = Encoded(ids, types, [float(i % 3) for i in range(200)])
    for _ in range(5):
        chosen = rng.sample(range(200), 17)
        batch = data.collate(chosen, pad_id=7, label_dtype=torch.float32)
        rows = [ids[i] for i in chosen]
        assert batch["input_ids"].tolist() == _padded_one_by_one(rows, 7)
        assert batch["token_type_ids"].tolist() == _padded_one_by_one([types[i] for i in chosen], 0)
        assert batch["attention_mask"].tolist() == _padded_one_by_one([[1] * len(r) for r in rows], 0)
        assert batch["labels"].tolist() == [float(i % 3) for i in chosen]
        assert all(t.dtype == torch.long for k, t in batch.items() if k != "labels")


def test_padding_to_max_length_gives_every_batch_the_same_width_as_the_reference_does():
    ids = [[5, 6], [5, 6, 7, 8], [9]]
    data = Encoded(ids, [[0] * len(r) for r in ids])
    batch = data.collate([0, 2], pad_id=0, width=6)
    assert batch["input_ids"].tolist() == _padded_one_by_one([ids[0], ids[2]], 0, width=6)
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="cannot pad to 3 tokens an example of 4"):
        data.collate([1], width=3)


def test_without_segment_ids_or_labels_segments_are_zero_and_no_labels_are_given():
    batch = Encoded([[5, 6, 7], [8], []]).collate([2, 1, 0, 1])
    assert batch["input_ids"].tolist() == [[0, 0, 0], [8, 0, 0], [5, 6, 7], [8, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0] * 3] * 4
    assert "labels" not in batch


def test_a_batch_of_empty_examples_has_width_zero():
    batch = Encoded([[], []]).collate([0, 1])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 0)


def test_segment_ids_of_another_length_than_the_tokens_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        Encoded([[5, 6, 7], [8, 9]], [[0, 0], [1, 1, 1]]).collate([0, 1])
