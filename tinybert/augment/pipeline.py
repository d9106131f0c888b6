"""Algorithm 1 over a run of examples, chunk by chunk: the stage's loop, shared with the benchmark.

A chunk's candidate sets (tokenisation, MLM batches, GloVe searches) are computed together, so
that MLM inputs fill large batches; then each example's sentences are sampled. The next chunk's
MLM batches are queued before the current chunk's results are read, so on a GPU they run while
the host looks up GloVe neighbours, samples and writes the current chunk (on a CPU the order
changes nothing). A helper thread computing the next chunk was tried first and gave nothing on
an H200 (71.2x against 72.7x): the two threads shared the interpreter lock.
"""
from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tinybert.augment.algorithm import PendingSets, augment_sentence, collect_candidate_sets, example_rng, launch_candidate_sets
from tinybert.augment.glove import GloveNeighbours
from tinybert.augment.mlm import MlmCandidates
from tinybert.augment.words import basic_words


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
) -> Iterator[tuple[range, list[list[list[str] | None]]]]:
    """Yield ``(rows, variants)`` per chunk of ``chunk_examples`` examples, in order.

    ``examples[r]`` holds an example's sentences (``None`` where an optional sentence is absent);
    ``variants[i][part]`` lists the original sentence, then its new ones (``augment_sentence``),
    for example ``rows[i]``, or is ``None`` for an absent sentence. Each example's sentences draw
    from one generator seeded by (``seed``, ``ids[r]``), first sentence first, so the output does
    not depend on the chunking. ``stats`` counts words by candidate source (``candidate_sets``).
    """
    chunks = [range(start, min(start + chunk_examples, len(examples))) for start in range(0, len(examples), chunk_examples)]

    def launch(rows: range) -> tuple[list[tuple[int, int]], PendingSets]:
        owners = [(r, part) for r in rows for part, text in enumerate(examples[r]) if text is not None]
        sentences = [basic_words(tools.tokenizer, examples[r][part]) for r, part in owners]
        return owners, launch_candidate_sets(sentences, tools.mlm, tools.stopwords)

    def launch_ahead(i: int):
        # A chunk that fails to start fails in its own turn: the chunks before are delivered first.
        try:
            return launch(chunks[i]) if i < len(chunks) else None
        except Exception as err:  # noqa: BLE001 (re-raised below)
            # Free the failed launch's locals (GPU batches among them) now, not when it is raised:
            # after an out-of-memory error the chunk before must not fail for want of memory.
            traceback.clear_frames(err.__traceback__)
            return err

    ahead = launch_ahead(0)
    for i, rows in enumerate(chunks):
        if isinstance(ahead, Exception):
            raise ahead
        (owners, pending), ahead = ahead, launch_ahead(i + 1)
        sets = collect_candidate_sets(pending, tools.glove, stats)
        rngs = {r: example_rng(seed, ids[r]) for r in rows}
        variants: list[list[list[str] | None]] = [[None] * len(examples[r]) for r in rows]
        for (r, part), words, word_sets in zip(owners, pending.sentences, sets):
            variants[r - rows.start][part] = augment_sentence(words, word_sets, p_t, n_aug, rngs[r], original=examples[r][part])
        yield rows, variants
