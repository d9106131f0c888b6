"""Algorithm 1 of TinyBERT: candidate sets per word, then N_a sampled sentences.

Rules (method.md, "Data augmentation" and its "Reference details"):
- only eligible words (letters a-z, not a stop word) are replaced; a single-piece word gets MLM
  candidates, any other eligible word its GloVe neighbours; an empty set becomes the word itself;
- for each of the N_a tries, for each eligible word: draw a candidate uniformly, then draw
  u ~ U(0, 1) and use the candidate if u < p_t; the new sentence is the words joined by spaces and
  is kept only if it is not already in the output, so a sentence yields at most N_a + 1 rows, the
  original first.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from tinybert.augment.glove import GloveNeighbours
from tinybert.augment.mlm import MlmCandidates, PendingCandidates
from tinybert.augment.words import is_eligible


def candidate_sets(
    sentences: list[list[str]],
    mlm: MlmCandidates,
    glove: GloveNeighbours,
    stopwords: frozenset[str],
    stats: Counter | None = None,
) -> list[list[list[str] | None]]:
    """Candidate sets for every word of every sentence (``None`` for an ineligible word).

    Sentences are processed together so that MLM inputs and GloVe searches are batched.
    ``stats`` (optional) counts words by source: ``mlm``, ``glove`` and ``itself`` (no candidate).
    """
    return collect_candidate_sets(launch_candidate_sets(sentences, mlm, stopwords), glove, stats)


@dataclass
class PendingSets:
    """:func:`candidate_sets` between its MLM batches' launch and their results."""

    sentences: list[list[str]]
    eligible: list[list[int]]
    mlm: MlmCandidates
    from_mlm: PendingCandidates


def launch_candidate_sets(sentences: list[list[str]], mlm: MlmCandidates, stopwords: frozenset[str]) -> PendingSets:
    """The first half of :func:`candidate_sets`: find the eligible words and queue their MLM batches."""
    eligible = [[i for i, w in enumerate(words) if is_eligible(w, stopwords)] for words in sentences]
    return PendingSets(sentences, eligible, mlm, mlm.launch(sentences, eligible))


def collect_candidate_sets(pending: PendingSets, glove: GloveNeighbours,
                           stats: Counter | None = None) -> list[list[list[str] | None]]:
    """The second half: wait for the MLM candidates, give every other eligible word its GloVe neighbours."""
    sentences, eligible = pending.sentences, pending.eligible
    from_mlm = pending.mlm.collect(pending.from_mlm)
    to_glove = [sentences[s][i] for s, indices in enumerate(eligible) for i in indices if i not in from_mlm[s]]
    from_glove = glove.neighbours(to_glove)
    out = []
    for s, words in enumerate(sentences):
        sets: list[list[str] | None] = [None] * len(words)
        for i in eligible[s]:
            source = "mlm" if i in from_mlm[s] else "glove"
            found = from_mlm[s][i] if source == "mlm" else from_glove[words[i]]
            if not found:
                found, source = [words[i]], "itself"
            sets[i] = found
            if stats is not None:
                stats[source] += 1
        out.append(sets)
    return out


def augment_sentence(
    words: list[str],
    candidate_sets: list[list[str] | None],
    p_t: float,
    n_aug: int,
    rng: np.random.Generator,
    original: str | None = None,
) -> list[str]:
    """The original sentence followed by up to ``n_aug`` distinct new sentences.

    ``original`` (default: the words joined by spaces) is returned as given as the first row;
    a new sentence already in the output, the original included, is dropped. As in the
    reference, a try that replaces nothing gives the original's words joined by spaces: a new
    row when the original was written otherwise ("The cat sat." -> "the cat sat .").
    """
    first = " ".join(words) if original is None else original
    out = [first]
    seen = {first}
    positions = [i for i, c in enumerate(candidate_sets) if c is not None]
    for _ in range(n_aug):
        new = list(words)
        for i in positions:
            choices = candidate_sets[i]
            candidate = choices[int(rng.integers(len(choices)))]
            if rng.random() < p_t:
                new[i] = candidate
        sentence = " ".join(new)
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def example_rng(seed: int, example_id: int) -> np.random.Generator:
    """A generator that depends only on (seed, example), so output never depends on batching."""
    # default_rng takes non-negative integers only; wrap negative ids to their 64-bit pattern.
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, example_id & 0xFFFFFFFFFFFFFFFF])
