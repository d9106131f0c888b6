from collections import Counter

import numpy as np

from tinybert.augment.algorithm import augment_sentence, candidate_sets, example_rng
from tinybert.augment.glove import GloveNeighbours
from tinybert.augment.mlm import MlmCandidates
from tinybert.augment.words import load_stopwords

from .conftest import make_mlm

STOP = load_stopwords()


def sets_for(tokenizer, tiny_kv, sentences, stats=None):
    mlm = MlmCandidates(make_mlm(tokenizer, {"dog": 100.0, "##s": 95.0, "bird": 90.0}), tokenizer, k=3, batch_size=8)
    return candidate_sets(sentences, mlm, GloveNeighbours(tiny_kv, k=2), STOP, stats)


def test_candidate_sources_follow_word_kind(tokenizer, tiny_kv):
    words = ["the", "cat", "unbelievably", "zyxqv", "!", "42", "Unbelievably"]
    stats = Counter()
    (sets,) = sets_for(tokenizer, tiny_kv, [words], stats)
    assert sets[0] is None  # stop word
    assert sets[1] == ["dog", "bird"]  # single piece: MLM, "##s" dropped
    assert sets[2] == ["incredibly", "remarkably"]  # several pieces: GloVe
    assert sets[3] == ["zyxqv"]  # several pieces, not in GloVe: keeps itself
    assert sets[4] is None and sets[5] is None  # not alphabetic
    assert sets[6] == ["Incredibly", "Remarkably"]  # cased input stays several pieces; title case kept
    assert stats == Counter(mlm=1, glove=2, itself=1)


def test_sentences_are_handled_together_as_alone(tokenizer, tiny_kv):
    a, b = ["a", "cat", "unbelievably"], ["dogs", "bark", "zyxqv"]
    assert sets_for(tokenizer, tiny_kv, [a, b]) == sets_for(tokenizer, tiny_kv, [a]) + sets_for(tokenizer, tiny_kv, [b])


WORDS = ["the", "cat", "sat", "on", "a", "mat", "."]
SETS = [None, ["dog", "bird"], ["lay", "stood"], None, None, ["rug", "sofa", "bed"], None]


def test_p_zero_keeps_the_original_and_at_most_its_words_joined_as_the_reference_does(tokenizer):
    out = augment_sentence(WORDS, SETS, 0.0, 20, example_rng(1, 0), original="The cat sat on a mat.")
    assert out == ["The cat sat on a mat.", "the cat sat on a mat ."]  # not in the output yet: kept once
    assert augment_sentence(WORDS, SETS, 0.0, 20, example_rng(1, 0)) == ["the cat sat on a mat ."]


def test_original_text_is_first_and_kept_exactly(tokenizer):
    out = augment_sentence(WORDS, SETS, 0.4, 20, example_rng(1, 0), original="The  Cat sat on a mat.")
    assert out[0] == "The  Cat sat on a mat."
    assert len(out) == len(set(out)) and 1 < len(out) <= 21


def test_p_one_puts_a_drawn_candidate_at_every_eligible_position():
    out = augment_sentence(WORDS, SETS, 1.0, 10, example_rng(7, 3))
    assert out[0] == "the cat sat on a mat ."
    for sentence in out[1:]:
        new = sentence.split(" ")
        for word, old, choices in zip(new, WORDS, SETS):
            assert word == old if choices is None else word in choices


def test_single_candidate_sets_give_one_new_sentence():
    sets = [None, ["dog"], None, None, None, ["rug"], None]
    assert augment_sentence(WORDS, sets, 1.0, 30, example_rng(0, 0)) == [
        "the cat sat on a mat .", "the dog sat on a rug ."]


def test_word_with_only_itself_never_changes():
    sets = [None, ["cat"], None, None, None, ["mat"], None]
    assert augment_sentence(WORDS, sets, 1.0, 30, example_rng(0, 0)) == ["the cat sat on a mat ."]


def test_draws_are_candidate_then_threshold_per_eligible_word():
    # Hand-run of the rule with the same generator: index ~ U{0..n-1}, then u ~ U(0,1), replace if u < p.
    rng = example_rng(5, 9)
    expected = ["the cat sat on a mat ."]
    for _ in range(6):
        new = list(WORDS)
        for i, choices in enumerate(SETS):
            if choices is not None:
                pick = choices[int(rng.integers(len(choices)))]
                if rng.random() < 0.5:
                    new[i] = pick
        if " ".join(new) not in expected:
            expected.append(" ".join(new))
    assert augment_sentence(WORDS, SETS, 0.5, 6, example_rng(5, 9)) == expected


def test_same_seed_and_example_give_same_output():
    run = lambda seed, example: augment_sentence(WORDS, SETS, 0.4, 20, example_rng(seed, example))
    assert run(42, 3) == run(42, 3)
    assert run(42, 3) != run(43, 3) or run(42, 3) != run(42, 4)


def test_negative_example_ids_seed_a_generator():
    assert isinstance(example_rng(42, -1), np.random.Generator)
