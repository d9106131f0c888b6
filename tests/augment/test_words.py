from tinybert.augment.words import basic_words, is_eligible, load_stopwords


def test_basic_words_are_normalised_and_split_at_punctuation(tokenizer):
    assert basic_words(tokenizer, "Héllo, World! It's $3.50") == [
        "hello", ",", "world", "!", "it", "'", "s", "$", "3", ".", "50"]


def test_basic_words_of_empty_text_is_empty(tokenizer):
    assert basic_words(tokenizer, "   ") == []


def test_stopword_list_is_the_reference_list():
    stopwords = load_stopwords()
    assert len(stopwords) == 173
    assert {"the", "a", "not", "'s", "'re"} <= stopwords
    assert "cat" not in stopwords


def test_only_alphabetic_non_stopwords_are_eligible():
    stopwords = load_stopwords()
    assert is_eligible("cat", stopwords)
    assert is_eligible("Cat", stopwords)  # judged lower-cased
    for word in ["the", "The", "not", "42", "3d", "!", "don't", "café", "", "'s"]:
        assert not is_eligible(word, stopwords), word
