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


def augment(tools, chunk, examples=EXAMPLES):
    return list(augmented_chunks(examples, IDS, tools, p_t=0.5, n_aug=6, seed=42, chunk_examples=chunk))


def test_chunks_cover_the_examples_in_order_with_one_variant_list_per_sentence(tokenizer, tiny_kv):
    chunks = augment(tools(tokenizer, tiny_kv), chunk=3)
    assert [rows for rows, _ in chunks] == [range(0, 3), range(3, 4)]
    variants = [v for _, chunk in chunks for v in chunk]
    for (text, text_b), (first, second) in zip(EXAMPLES, variants):
        assert first[0] == text and len(first) > 1
        assert (second is None) == (text_b is None)
        assert second is None or second[0] == text_b


def test_variants_do_not_depend_on_chunking(tokenizer, tiny_kv):
    flat = lambda chunks: [v for _, chunk in chunks for v in chunk]  # noqa: E731
    whole = flat(augment(tools(tokenizer, tiny_kv), chunk=len(EXAMPLES)))
    assert flat(augment(tools(tokenizer, tiny_kv), chunk=1)) == whole
    assert flat(augment(tools(tokenizer, tiny_kv), chunk=3)) == whole


def test_a_failure_in_a_later_chunk_reaches_the_caller_after_the_chunks_before(tokenizer, tiny_kv, monkeypatch):
    real = pipeline.launch_candidate_sets

    def fails_on_dogs(sentences, *args):
        if sentences[0][0] == "dogs":
            raise RuntimeError("boom")
        return real(sentences, *args)

    # The next chunk is started before the current one is delivered: its failure must wait its turn.
    monkeypatch.setattr(pipeline, "launch_candidate_sets", fails_on_dogs)
    chunks = augmented_chunks(EXAMPLES, IDS, tools(tokenizer, tiny_kv), p_t=0.5, n_aug=2, seed=1, chunk_examples=1)
    assert next(chunks)[0] == range(0, 1)
    with pytest.raises(RuntimeError, match="boom"):
        next(chunks)


def test_no_examples_yield_no_chunks(tokenizer, tiny_kv):
    assert augment(tools(tokenizer, tiny_kv), chunk=4, examples=[]) == []



def test_the_next_chunk_is_launched_before_the_current_one_is_collected(tokenizer, tiny_kv, monkeypatch):
    # On a GPU the next chunk's MLM batches then run while the host samples the current chunk.
    calls = []
    launch, collect = pipeline.launch_candidate_sets, pipeline.collect_candidate_sets
    monkeypatch.setattr(pipeline, "launch_candidate_sets",
                        lambda sentences, *args: calls.append(("launch", sentences[0][0])) or launch(sentences, *args))
    monkeypatch.setattr(pipeline, "collect_candidate_sets",
                        lambda pending, *args: calls.append(("collect", pending.sentences[0][0])) or collect(pending, *args))
    augment(tools(tokenizer, tiny_kv), chunk=2)
    assert calls == [("launch", "a"), ("launch", "the"), ("collect", "a"), ("collect", "the")]
