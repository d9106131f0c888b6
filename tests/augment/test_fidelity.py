"""The fast augmentation path gives exactly what Algorithm 1, run literally, gives."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tinybert.augment import stage
from tinybert.augment.algorithm import candidate_sets
from tinybert.augment.glove import GloveNeighbours, load_glove
from tinybert.augment.mlm import MlmCandidates
from tinybert.augment.words import basic_words, load_stopwords
from tinybert.config import AugmentConfig
from tinybert.io import read_sharded

from .conftest import make_mlm
from .reference import ReferenceAugmenter

SENTENCES = [
    "The film's unbelievably clumsy screenplay wastes a terrific cast.",
    "A gorgeous, witty and seductive movie.",
    "Zyxqv plays Paris as a city of dreams and schadenfreude!",
    "It is not a bad film, just an utterly forgettable one.",
]
PAIRS = [(SENTENCES[0], SENTENCES[1]), (SENTENCES[2], None), (SENTENCES[3], "Nothing works.")]
K, GLOVE_LIMIT = 6, 20_000


@pytest.fixture(scope="module")
def assets(tokenizer):
    # A random MLM gives varied, untied candidates; the real GloVe gives real neighbours.
    return make_mlm(tokenizer, seed=3), load_glove("embedded:glove-6b-50d", GLOVE_LIMIT)


@pytest.fixture(scope="module")
def reference(assets, tokenizer):
    model, kv = assets
    return ReferenceAugmenter(model, tokenizer, kv, k=K, p_t=0.4, n_aug=6, stopwords=load_stopwords())


def test_candidate_sets_equal_the_literal_algorithm(assets, tokenizer, reference):
    model, kv = assets
    fast = candidate_sets(
        [basic_words(tokenizer, s) for s in SENTENCES],
        MlmCandidates(model, tokenizer, k=K, batch_size=5),
        GloveNeighbours(kv, k=K),
        load_stopwords(),
    )
    for sentence, fast_sets in zip(SENTENCES, fast):
        _, literal_sets = reference.candidate_sets(sentence)
        assert fast_sets == literal_sets, sentence
    assert any(s and len(s) > 1 for sets in fast for s in sets)  # the comparison is not vacuous


def test_the_stage_writes_the_sentences_of_the_literal_algorithm(assets, tokenizer, reference, tmp_path):
    model, _ = assets
    mlm_dir = tmp_path / "mlm"
    model.save_pretrained(mlm_dir)
    tokenizer.save_pretrained(mlm_dir)
    task = tmp_path / "task"
    task.mkdir()
    pq.write_table(pa.table({
        "id": pa.array([5, 6, 7], pa.int64()),
        "text": [a for a, _ in PAIRS],
        "text_b": pa.array([b for _, b in PAIRS], pa.string()),
        "label": pa.array([1.0, 0.0, 1.0], pa.float64()),
    }), task / "train.parquet")
    cfg = AugmentConfig(glove="embedded:glove-6b-50d", glove_limit=GLOVE_LIMIT, k=K, p_t=0.4, n_aug=6, seed=9, batch_size=4)
    stage.run(cfg, task_dir=task, mlm_dir=mlm_dir, out_dir=tmp_path / "out")
    written = read_sharded(tmp_path / "out").to_pydict()

    expected = [row for i, (a, b) in zip((5, 6, 7), PAIRS) for row in reference.augment_example(i, a, b, seed=9)]
    assert list(zip(written["text"], written["text_b"])) == expected
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["generated_rows"] == len(expected) - 3
