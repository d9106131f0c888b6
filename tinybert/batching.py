"""Tokenised examples and padding collation for task data and corpus shards."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from tinybert.errors import InputError
from tinybert.io import read_json, read_sharded


@dataclass
class Encoded:
    """Token ids per example (unpadded) with optional segment ids and labels."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None = None
    labels: list[float] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def collate(self, indices: list[int], pad_id: int = 0, label_dtype=torch.long, width: int | None = None) -> dict:
        """Pad the chosen examples to ``width`` or, by default, to the longest among them
        (dynamic padding)."""
        packed = self._packed
        chosen = torch.as_tensor(indices, dtype=torch.long)
        lengths = packed.lengths[chosen]
        longest = int(lengths.max()) if len(chosen) else 0
        if width is not None and width < longest:
            raise ValueError(f"cannot pad to {width} tokens an example of {longest}")
        width = longest if width is None else width
        positions = torch.arange(width)
        inside = positions < lengths[:, None]
        # Each row's tokens read from the flat tensor in one gather; positions past a row's end
        # read index 0 and are overwritten with padding.
        at = torch.where(inside, packed.offsets[chosen][:, None] + positions, 0)
        flat_at = at.reshape(-1)
        ids = torch.where(inside, packed.input_ids.index_select(0, flat_at).view(at.shape).long(), pad_id)
        types = torch.zeros_like(ids) if packed.token_type_ids is None else \
            torch.where(inside, packed.token_type_ids.index_select(0, flat_at).view(at.shape).long(), 0)
        batch = {"input_ids": ids, "attention_mask": inside.long(), "token_type_ids": types}
        if self.labels is not None:
            batch["labels"] = torch.tensor([self.labels[i] for i in indices], dtype=label_dtype)
        return batch

    @cached_property
    def _packed(self) -> "_Packed":
        # Built on the first collate (the examples must not change afterwards). Padding a batch
        # row by row from Python lists took about 7 ms for 256 x 64 tokens: on a GPU that is a
        # tenth of a distillation step, spent before the step can start.
        return _Packed.of(self.input_ids, self.token_type_ids)


@dataclass(frozen=True)
class _Packed:
    """Examples as one flat int32 tensor per field, with each example's offset and length."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor | None
    offsets: torch.Tensor
    lengths: torch.Tensor

    @staticmethod
    def of(input_ids: list[list[int]], token_type_ids: list[list[int]] | None) -> "_Packed":
        lengths = np.fromiter((len(row) for row in input_ids), dtype=np.int64, count=len(input_ids))
        offsets = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        total = int(lengths.sum())

        def flat(rows):  # copied into torch-owned memory
            return torch.from_numpy(np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=total)).clone()

        if token_type_ids is not None and [len(row) for row in token_type_ids] != lengths.tolist():
            raise ValueError("token_type_ids and input_ids differ in length for some example")
        return _Packed(flat(input_ids), None if token_type_ids is None else flat(token_type_ids),
                       torch.from_numpy(offsets).clone(), torch.from_numpy(lengths).clone())


def read_task_labels(task_dir: Path) -> dict:
    """The prepared task's ``labels.json`` (task type, label names, splits...)."""
    path = Path(task_dir) / "labels.json"
    if not path.is_file():
        raise InputError(f"{task_dir}: no labels.json; run the prepare-task stage first")
    return read_json(path)


def read_task_split(path: Path):
    if not Path(path).is_file():
        raise InputError(f"{path}: task split missing; run the prepare-task stage")
    return pq.read_table(path).to_pydict()


def encode_task(tokenizer, rows: dict, max_seq_len: int) -> Encoded:
    """Tokenise ``text`` (and ``text_b`` for pairs) to at most ``max_seq_len`` pieces."""
    texts = rows["text"]
    pairs = rows.get("text_b")
    has_pairs = pairs is not None and any(p is not None for p in pairs)
    enc = tokenizer(
        texts,
        [p or "" for p in pairs] if has_pairs else None,
        truncation=True,
        max_length=max_seq_len,
        return_token_type_ids=True,
    )
    return Encoded(enc["input_ids"], enc["token_type_ids"], list(rows["label"]))


def encode_corpus(corpus_dir: Path, max_seq_len: int | None = None) -> Encoded:
    """Corpus token shards; sequences longer than ``max_seq_len`` are cut, keeping the final [SEP]."""
    ids = read_sharded(corpus_dir, ["input_ids"]).column("input_ids").to_pylist()
    if max_seq_len is not None:
        ids = [seq if len(seq) <= max_seq_len else seq[: max_seq_len - 1] + seq[-1:] for seq in ids]
    return Encoded(ids)
