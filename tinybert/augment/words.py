"""Words of a sentence as Algorithm 1 sees them, and which of them may be replaced.

Rule (method.md, "Reference details"): the words are the teacher tokenizer's *basic*
(pre-word-piece) tokens of the sentence. A word is eligible for replacement when, lower-cased,
it consists of the letters a-z only and is not in the reference stop-word list (NLTK's English
list plus ``'s`` and ``'re``, 173 entries, shipped as ``stopwords.txt`` beside this file).
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

_LETTERS = re.compile(r"[a-z]+")


def basic_words(tokenizer, text: str) -> list[str]:
    """The basic tokens of ``text``: the fast tokenizer's normalizer, then its pre-tokenizer.

    transformers 5's fast BERT tokenizer has no ``basic_tokenizer``; its backend normalizer
    (cleaning, lower-casing and accent stripping for uncased models) followed by its
    pre-tokenizer (whitespace and punctuation split) is the same basic tokenisation.
    """
    backend = tokenizer.backend_tokenizer
    normalized = backend.normalizer.normalize_str(text) if backend.normalizer is not None else text
    if backend.pre_tokenizer is None:
        return normalized.split()
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalized)]


def is_eligible(word: str, stopwords: frozenset[str] | set[str]) -> bool:
    """True when ``word``, lower-cased, is letters a-z only and not a stop word."""
    lower = word.lower()
    return _LETTERS.fullmatch(lower) is not None and lower not in stopwords


@lru_cache(maxsize=1)
def load_stopwords() -> frozenset[str]:
    """The reference stop-word list shipped with the package."""
    text = resources.files("tinybert.augment").joinpath("stopwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())
