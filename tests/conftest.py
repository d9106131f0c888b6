import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import pytest
import torch
from transformers import BertConfig


@pytest.fixture
def tiny_bert_config():
    """A 2-layer BERT small enough for a forward pass in milliseconds."""
    return BertConfig(
        vocab_size=120,
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=32,
    )


@pytest.fixture
def padded_batch():
    """Three sequences of lengths 7, 4 and 2, padded to 7."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 120, (3, 7), generator=generator)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@pytest.fixture(autouse=True)
def checkpoints_elsewhere(tmp_path_factory, monkeypatch):
    # Unfinished shards and training state are kept for resuming; keep them out of the
    # repository and out of the tests' own tmp_path.
    monkeypatch.setenv("TINYBERT_CHECKPOINTS", str(tmp_path_factory.mktemp("checkpoints")))
