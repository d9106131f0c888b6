import sys
import threading

import pytest

from tinybert.augment import pipeline
from tinybert.augment.glove import GloveNeighbours
from tinybert.augment.mlm import MlmCandidates
from tinybert.augment.pipeline import AugmentTools, augmented_chunks
from tinybert.augment.words import load_stopwords

from .conftest import make_mlm

EXAMPLES = [("A cat sat on the mat.", None), ("Dogs chase cars.", "Birds sing unbelievably."),
            ("The zyxqv barked.", None), ("A bird and a dog!", "Cats nap.")]
IDS = [7, 3, 11, 5]


def tools(tokenizer, tiny_kv) -> AugmentTools:
    mlm = MlmCandidates(make_mlm(tokenizer, {"dog": 100.0, "bird": 90.0}), tokenizer, k=3, batch_size=4)
    return AugmentTools(tokenizer, mlm, GloveNeighbours(tiny_kv, k=2), load_stopwords())


def augment(tools, chunk, lookahead=True, examples=EXAMPLES):
    return list(augmented_chunks(examples, IDS, tools, p_t=0.5, n_aug=6, seed=42, chunk_examples=chunk,
                                 lookahead=lookahead))


def test_chunks_cover_the_examples_in_order_with_one_variant_list_per_sentence(tokenizer, tiny_kv):
    chunks = augment(tools(tokenizer, tiny_kv), chunk=3)
    assert [rows for rows, _ in chunks] == [range(0, 3), range(3, 4)]
    variants = [v for _, chunk in chunks for v in chunk]
    for (text, text_b), (first, second) in zip(EXAMPLES, variants):
        assert first[0] == text and len(first) > 1
        assert (second is None) == (text_b is None)
        assert second is None or second[0] == text_b


def test_variants_do_not_depend_on_chunking_or_lookahead(tokenizer, tiny_kv):
    flat = lambda chunks: [v for _, chunk in chunks for v in chunk]  # noqa: E731
    whole = flat(augment(tools(tokenizer, tiny_kv), chunk=len(EXAMPLES), lookahead=False))
    assert flat(augment(tools(tokenizer, tiny_kv), chunk=1)) == whole
    assert flat(augment(tools(tokenizer, tiny_kv), chunk=3)) == whole


def test_the_next_chunks_candidates_are_computed_while_the_caller_holds_a_chunk(tokenizer, tiny_kv, monkeypatch):
    computed, real = [], pipeline.candidate_sets
    done = threading.Event()

    def recorded(sentences, *args):
        out = real(sentences, *args)
        computed.append((sentences[0][0], threading.current_thread().name))
        if len(computed) == 2:
            done.set()
        return out

    monkeypatch.setattr(pipeline, "candidate_sets", recorded)
    chunks = augmented_chunks(EXAMPLES, IDS, tools(tokenizer, tiny_kv), p_t=0.5, n_aug=2, seed=1, chunk_examples=2)
    next(chunks)  # the caller holds chunk 0 ...
    assert done.wait(timeout=30)  # ... while chunk 1's candidates are computed
    assert [word for word, _ in computed] == ["a", "the"]  # the first words of examples 0 and 2
    assert all(thread.startswith("augment-candidates") for _, thread in computed)
    assert len(list(chunks)) == 1


def test_a_failure_computing_a_later_chunk_reaches_the_caller(tokenizer, tiny_kv, monkeypatch):
    real = pipeline.candidate_sets

    def fails_on_dogs(sentences, *args):
        if sentences[0][0] == "dogs":
            raise RuntimeError("boom")
        return real(sentences, *args)

    monkeypatch.setattr(pipeline, "candidate_sets", fails_on_dogs)
    chunks = augmented_chunks(EXAMPLES, IDS, tools(tokenizer, tiny_kv), p_t=0.5, n_aug=2, seed=1, chunk_examples=1)
    assert next(chunks)[0] == range(0, 1)
    with pytest.raises(RuntimeError, match="boom"):
        next(chunks)


def test_no_examples_yield_no_chunks(tokenizer, tiny_kv):
    assert augment(tools(tokenizer, tiny_kv), chunk=4, examples=[]) == []


def test_the_interpreter_switch_interval_is_shortened_only_while_chunks_are_produced(tokenizer, tiny_kv):
    before = sys.getswitchinterval()
    chunks = augmented_chunks(EXAMPLES, IDS, tools(tokenizer, tiny_kv), p_t=0.5, n_aug=2, seed=1, chunk_examples=2)
    next(chunks)
    assert sys.getswitchinterval() == pytest.approx(min(before, pipeline.SWITCH_INTERVAL))  # stored in µs
    list(chunks)
    assert sys.getswitchinterval() == before
