"""Algorithm 1 over a run of examples, chunk by chunk, with the next chunk's candidates computed
while the current chunk is sampled.

A chunk's candidate sets (tokenisation, MLM batches, GloVe searches) are computed in one helper
thread, one chunk ahead of the caller, who samples the sentences and writes rows. On a GPU the
caller's Python work then runs while the MLM batches do, instead of leaving the GPU idle: the
H200 profile had the host's part at half the fast path's time. Each chunk's computation is the
same as without the helper (same inputs, same batches, in order), so the output is too; torch
releases the GIL while kernels run and while it waits for the GPU, which is what lets the two
threads overlap.
"""
from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tinybert.augment.algorithm import augment_sentence, candidate_sets, example_rng
from tinybert.augment.glove import GloveNeighbours
from tinybert.augment.mlm import MlmCandidates
from tinybert.augment.words import basic_words


SWITCH_INTERVAL = 1e-4  # seconds; see augmented_chunks


@dataclass
class AugmentTools:
    """What Algorithm 1 needs besides its parameters: the MLM's tokenizer (whose basic words are
    the words replaced), MLM candidates, GloVe neighbours and the stop words."""

    tokenizer: object
    mlm: MlmCandidates
    glove: GloveNeighbours
    stopwords: frozenset


def augmented_chunks(
    examples: Sequence[tuple[str | None, ...]],
    ids: Sequence[int],
    tools: AugmentTools,
    *,
    p_t: float,
    n_aug: int,
    seed: int,
    chunk_examples: int,
    stats: Counter | None = None,
    lookahead: bool = True,
) -> Iterator[tuple[range, list[list[list[str] | None]]]]:
    """Yield ``(rows, variants)`` per chunk of ``chunk_examples`` examples, in order.

    ``examples[r]`` holds an example's sentences (``None`` where an optional sentence is absent);
    ``variants[i][part]`` lists the original sentence, then its new ones (``augment_sentence``),
    for example ``rows[i]``, or is ``None`` for an absent sentence. Each example's sentences draw
    from one generator seeded by (``seed``, ``ids[r]``), first sentence first, so the output does
    not depend on the chunking. ``lookahead=False`` computes every chunk in the caller's thread.
    """
    chunks = [range(start, min(start + chunk_examples, len(examples))) for start in range(0, len(examples), chunk_examples)]

    def candidates(rows: range) -> tuple[list[tuple[int, int]], list[list[str]], list]:
        owners = [(r, part) for r in rows for part, text in enumerate(examples[r]) if text is not None]
        sentences = [basic_words(tools.tokenizer, examples[r][part]) for r, part in owners]
        return owners, sentences, candidate_sets(sentences, tools.mlm, tools.glove, tools.stopwords, stats)

    switch_interval = sys.getswitchinterval()
    if lookahead:
        # The helper calls torch hundreds of times per batch, giving up the GIL in each call; while
        # the caller runs Python, taking it back waits out the caller's switch interval (5 ms by
        # default), so on an H200 the helper stood still while the caller sampled (71x with the
        # helper, 73x without). A short interval lets the two interleave.
        sys.setswitchinterval(min(switch_interval, SWITCH_INTERVAL))
    try:
        yield from _chunks(chunks, candidates, examples, ids, p_t, n_aug, seed, lookahead)
    finally:
        sys.setswitchinterval(switch_interval)


def _chunks(chunks, candidates, examples, ids, p_t, n_aug, seed, lookahead):
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="augment-candidates") as helper:
        compute = helper.submit if lookahead else _now
        pending = compute(candidates, chunks[0]) if chunks else None
        for index, rows in enumerate(chunks):
            owners, sentences, sets = pending.result()
            pending = compute(candidates, chunks[index + 1]) if index + 1 < len(chunks) else None
            rngs = {r: example_rng(seed, ids[r]) for r in rows}
            variants = [[None] * len(examples[r]) for r in rows]
            for (r, part), words, word_sets in zip(owners, sentences, sets):
                variants[r - rows.start][part] = augment_sentence(
                    words, word_sets, p_t, n_aug, rngs[r], original=examples[r][part])
            yield rows, variants


class _Done:
    """A computed value with a future's ``result()``."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def _now(fn, *args) -> _Done:
    return _Done(fn(*args))
