"""GloVe candidates for words that are not a single word piece.

Rule (method.md, "Reference details"): search the first ``limit`` vectors (100,000 in the
reference), L2-normalised; the K nearest by dot product, the word itself excluded; the word is
looked up lower-cased; a word written in title case gets title-cased candidates; a word not in
GloVe has no candidates.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from gensim.models import KeyedVectors

from tinybert.assets import resolve
from tinybert.errors import InputError


def load_glove(path_or_embedded: str, limit: int) -> KeyedVectors:
    """Load the first ``limit`` word vectors from any of the supported forms.

    - ``embedded:glove-6b-50d`` or any folder holding one ``*.npy`` matrix and one ``*.parquet``
      word index (its first column, same row order);
    - a GloVe text file (``word v1 v2 ...``, no header; a word2vec header line is also accepted);
    - a gensim ``.kv`` file saved with ``KeyedVectors.save``.
    """
    if limit < 1:
        raise InputError(f"augment.glove_limit: must be >= 1, got {limit}")
    path = resolve(path_or_embedded, what="augment.glove")
    try:
        if path.is_dir():
            kv = _load_folder(path, limit)
        elif path.suffix == ".kv":
            kv = _truncate(KeyedVectors.load(str(path)), limit)
        else:
            kv = _read_text_vectors(path, limit)
    except InputError:
        raise
    except Exception as err:  # gensim/numpy/pyarrow raise many types for a corrupt file
        raise InputError(f"augment.glove: cannot read {path}: {type(err).__name__}: {err}") from None
    if len(kv) == 0:
        raise InputError(f"augment.glove: {path} holds no word vectors")
    return kv


def _load_folder(folder: Path, limit: int) -> KeyedVectors:
    import pyarrow.parquet as pq

    matrices, indexes = sorted(folder.glob("*.npy")), sorted(folder.glob("*.parquet"))
    if len(matrices) != 1 or len(indexes) != 1:
        raise InputError(f"augment.glove: {folder} must hold exactly one .npy matrix and one .parquet word index")
    words = pq.read_table(indexes[0]).column(0).to_pylist()[:limit]
    # mmap: only the first ``limit`` rows are read from a 400k-row matrix.
    vectors = np.load(matrices[0], mmap_mode="r")
    if vectors.ndim != 2 or vectors.shape[0] < len(words):
        raise InputError(f"augment.glove: {matrices[0]} has shape {vectors.shape}, index {indexes[0]} has {len(words)}+ words")
    return _keyed_vectors(words, vectors[: len(words)])


def _keyed_vectors(words: list[str], vectors: np.ndarray) -> KeyedVectors:
    # No count=: it pre-allocates empty rows (assets.md); the .npy is Fortran-ordered, so copy to C order.
    kv = KeyedVectors(vector_size=vectors.shape[1], dtype=np.float32)
    kv.add_vectors(words, np.ascontiguousarray(vectors, dtype=np.float32))
    return kv


def _truncate(kv: KeyedVectors, limit: int) -> KeyedVectors:
    if len(kv) <= limit:
        return kv
    return _keyed_vectors(kv.index_to_key[:limit], kv.vectors[:limit])


def _read_text_vectors(path: Path, limit: int) -> KeyedVectors:
    """The first ``limit`` rows of a GloVe text file (``word v1 ... vD``; an optional word2vec
    ``count D`` header line; gzip if named ``.gz``).

    Read here rather than by gensim so that a bad row is reported by its line number, blank lines
    and a byte-order mark are skipped, and a word holding spaces (a few rows of glove.840B) keeps
    them: the last D fields are the vector, whatever precedes them is the word.
    """
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    words: list[str] = []
    vectors: list[np.ndarray] = []  # parsed row by row: strings of 100k x 300 values would take GBs
    seen: set[str] = set()
    rows = 0
    dim = None
    # newline="\n": a stray carriage return inside a word does not end its line.
    with opener(path, "rt", encoding="utf-8-sig", newline="\n") as fh:
        for number, line in enumerate(fh, start=1):
            fields = line.rstrip().split(" ")  # word2vec and fastText write a space before the newline
            if not line.strip():
                continue
            if dim is None:
                if len(fields) == 2 and all(f.isdigit() for f in fields):  # word2vec header
                    dim = int(fields[1])
                    continue
                dim = len(fields) - 1
                if dim < 1:
                    raise InputError(f"augment.glove: {path}: line {number}: a word and its vector expected")
            if len(fields) < dim + 1 or (len(fields) > dim + 1 and _is_number(fields[-dim - 1])):
                raise InputError(f"augment.glove: {path}: line {number}: {len(fields) - 1} values, expected a word and {dim} numbers")
            word = " ".join(fields[:-dim])
            try:
                vector = np.array(fields[-dim:], dtype=np.float32)
            except ValueError:
                raise InputError(f"augment.glove: {path}: line {number}: the vector of {word!r} "
                                 "holds a value that is not a number") from None
            rows += 1
            if word not in seen:  # a second row would make the word its own neighbour
                seen.add(word)
                words.append(word)
                vectors.append(vector)
            if rows == limit:  # the first ``limit`` rows, as the reference reads them
                break
    if not words:
        raise InputError(f"augment.glove: {path} holds no word vectors")
    return _keyed_vectors(words, np.stack(vectors))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class GloveNeighbours:
    """K nearest GloVe words by cosine similarity, computed in batches and cached per word.

    The cache keeps the ``cache_words`` most recently used words, so memory stays bounded on a
    corpus with millions of distinct tokens (typos, numbers), while frequent words are searched
    once.
    """

    def __init__(self, kv: KeyedVectors, k: int, batch_size: int = 256, cache_words: int = 200_000,
                 device: str | torch.device = "cpu"):
        self.kv = kv
        self.k = k
        self.batch_size = batch_size
        self.cache_words = cache_words
        vectors = torch.from_numpy(np.ascontiguousarray(kv.vectors, dtype=np.float32))
        # On the MLM's GPU when there is one: a batch's similarities are a (batch x 100k) product.
        self._unit = torch.nn.functional.normalize(vectors.to(device), dim=1)
        # There the searches run on a stream of their own: the pipeline queues the next chunk's
        # MLM batches before it searches this chunk's words, and on the default stream a search
        # (and so the host) would wait for all of those batches.
        self._stream = torch.cuda.Stream(self._unit.device) if self._unit.is_cuda else None
        if self._stream is not None:
            torch.cuda.synchronize(self._unit.device)  # the vectors are ready before that stream reads them
        # lower-cased word -> candidates, least recently used first. Shards on Prefect's thread
        # runner share one instance: the lock keeps one thread from evicting a word another is
        # reading. Searches run outside it.
        self._cache: OrderedDict[str, list[str]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def neighbours(self, words: list[str]) -> dict[str, list[str]]:
        """Map each distinct word to its K nearest GloVe words ([] when it is not in GloVe)."""
        wanted = {w.lower() for w in words}
        found: dict[str, list[str]] = {}
        with self._cache_lock:
            for w in wanted & self._cache.keys():
                self._cache.move_to_end(w)
                found[w] = self._cache[w]
        todo = sorted(wanted - found.keys())
        known = [w for w in todo if w in self.kv.key_to_index]
        found.update((w, []) for w in todo if w not in self.kv.key_to_index)
        for start in range(0, len(known), self.batch_size):
            found.update(self._search(known[start : start + self.batch_size]))
        with self._cache_lock:
            for w in todo:
                self._cache[w] = found[w]
                self._cache.move_to_end(w)
            while len(self._cache) > self.cache_words:
                self._cache.popitem(last=False)
        out = {}
        for w in words:
            candidates = found[w.lower()]
            out[w] = [c.title() for c in candidates] if w.istitle() else list(candidates)
        return out

    def _search(self, batch: list[str]) -> dict[str, list[str]]:
        rows = torch.tensor([self.kv.key_to_index[w] for w in batch], dtype=torch.long)
        with torch.cuda.stream(self._stream) if self._stream is not None else nullcontext():
            scores = self._unit[rows.to(self._unit.device)] @ self._unit.T
            # k+1 so that k remain once the word's own row (excluded by index, not by score) is dropped.
            top = torch.topk(scores, min(self.k + 1, scores.shape[1]), dim=1).indices.tolist()
        return {word: [self.kv.index_to_key[i] for i in ids if i != row][: self.k]
                for word, row, ids in zip(batch, rows.tolist(), top)}
