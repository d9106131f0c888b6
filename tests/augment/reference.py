"""Algorithm 1 written the way the reference implementation runs it, one masked sentence at a time.

This is the yardstick for the fast path (``tinybert.augment``): the fidelity tests check that
both give the same candidate sets and the same sentences, and ``benchmarks/augment.py`` times it
as the baseline. It deliberately shares nothing with the fast path but the tokenizer's basic
words (transformers 5 has no ``basic_tokenizer``) and the per-example seeding contract:
- word pieces come from ``tokenizer.tokenize(sentence)`` mapped to words by the reference's
  ``##`` rule, not from ``word_ids``;
- one MLM forward per masked word, batch 1, the LM head over every position, gradients on
  (``inference=True`` for the "same baseline under inference mode" figure), then ``argsort``;
- GloVe similarities recomputed against every vector for each word, then ``argsort``.
"""
from __future__ import annotations

import contextlib
import re

import numpy as np
import torch

from tinybert.augment.algorithm import example_rng
from tinybert.augment.words import basic_words


class ReferenceAugmenter:
    def __init__(self, model, tokenizer, kv, *, k: int, p_t: float, n_aug: int, stopwords, inference: bool = False,
                 device: str = "cpu"):
        # The reference moves the model to the GPU when there is one, as the benchmark does.
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.k, self.p_t, self.n_aug = k, p_t, n_aug
        self.stopwords = stopwords
        self.inference = inference
        self.words = list(kv.index_to_key)
        self.index = dict(kv.key_to_index)
        vectors = np.asarray(kv.vectors, dtype=np.float32)
        self.unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    # ------------------------------------------------------------------ candidates
    def eligible(self, word: str) -> bool:
        lower = word.lower()
        return re.fullmatch(r"[a-z]+", lower) is not None and lower not in self.stopwords

    def pieces_of_word(self, pieces: list[str], word_index: int) -> list[int]:
        """Positions (in ``[CLS]`` + pieces) of basic word ``word_index``'s pieces: a piece not
        starting with ``##`` opens the next word (the reference's ``_word_augment`` loop)."""
        word, positions = -1, []
        for i, piece in enumerate(pieces, start=1):
            if not piece.startswith("##"):
                word += 1
                if word > word_index:
                    break
                positions = [i] if word == word_index else []
            elif word == word_index:
                positions.append(i)
        return positions

    def mlm_candidates(self, pieces: list[str], position: int) -> list[str]:
        masked = ["[CLS]"] + pieces
        masked[position] = "[MASK]"
        tokens = masked + ["[SEP]"] + pieces + ["[SEP]"]
        first = len(pieces) + 2
        segments = [0] * first + [1] * (len(tokens) - first)
        tokens, segments = tokens[:512], segments[:512]
        ids = torch.tensor([self.tokenizer.convert_tokens_to_ids(tokens)], device=self.device)
        types = torch.tensor([segments], device=self.device)
        guard = torch.inference_mode() if self.inference else contextlib.nullcontext()
        with guard:
            logits = self.model(input_ids=ids, token_type_ids=types).logits  # every position
        top = torch.argsort(logits[0, position], descending=True)[: self.k].tolist()
        return [t for t in self.tokenizer.convert_ids_to_tokens(top) if not t.startswith("##")]

    def glove_candidates(self, word: str) -> list[str]:
        lower = word.lower()
        if lower not in self.index:
            return []
        row = self.index[lower]
        similarity = self.unit @ self.unit[row]  # recomputed for every word, as the reference does
        similarity[row] = -np.inf
        found = [self.words[i] for i in np.argsort(-similarity, kind="stable")[: self.k]]
        return [w.title() for w in found] if word.istitle() else found

    def candidate_sets(self, sentence: str) -> tuple[list[str], list[list[str] | None]]:
        words = basic_words(self.tokenizer, sentence)
        pieces = self.tokenizer.tokenize(sentence)
        sets: list[list[str] | None] = [None] * len(words)
        for i, word in enumerate(words):
            if not self.eligible(word):
                continue
            positions = self.pieces_of_word(pieces, i)
            found = self.mlm_candidates(pieces, positions[0]) if len(positions) == 1 else self.glove_candidates(word)
            sets[i] = found or [word]
        return words, sets

    # ------------------------------------------------------------------ sampling
    def augment(self, sentence: str, rng: np.random.Generator) -> list[str]:
        words, sets = self.candidate_sets(sentence)
        out, seen = [sentence], {sentence}
        for _ in range(self.n_aug):
            new = list(words)
            for i, choices in enumerate(sets):
                if choices is None:
                    continue
                candidate = choices[int(rng.integers(len(choices)))]
                if rng.random() < self.p_t:
                    new[i] = candidate
            joined = " ".join(new)
            if joined not in seen:
                seen.add(joined)
                out.append(joined)
        return out

    def augment_example(self, example_id: int, text: str, text_b: str | None, seed: int) -> list[tuple[str, str | None]]:
        """(text, text_b) rows: the original, the first sentence's variants with the original
        second one, then the second sentence's variants with the original first one."""
        rng = example_rng(seed, example_id)
        variants = self.augment(text, rng)
        rows = [(variants[0], text_b)] + [(v, text_b) for v in variants[1:]]
        if text_b is not None:
            rows += [(text, v) for v in self.augment(text_b, rng)[1:]]
        return rows
