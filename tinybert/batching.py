"""Tokenised examples and padding collation for task data and corpus shards."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import torch

from tinybert.errors import InputError
from tinybert.io import read_sharded


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

    def collate(self, indices: list[int], pad_id: int = 0, label_dtype=torch.long) -> dict:
        """Pad the chosen examples to the longest among them (dynamic padding)."""
        rows = [self.input_ids[i] for i in indices]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long)
        for j, i in enumerate(indices):
            n = len(self.input_ids[i])
            ids[j, :n] = torch.tensor(self.input_ids[i])
            mask[j, :n] = 1
            if self.token_type_ids is not None:
                types[j, :n] = torch.tensor(self.token_type_ids[i])
        batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        if self.labels is not None:
            batch["labels"] = torch.tensor([self.labels[i] for i in indices], dtype=label_dtype)
        return batch


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
