"""Augment stage: the task's training set -> the set augmented by Algorithm 1.

Input: ``task_dir/train.parquet`` (``text``, optional ``text_b``, ``label`` float64, ``id`` int64)
and the masked-LM folder ``mlm_dir`` (model + tokenizer). Each example yields its original row
first, then the distinct generated sentences, each with the original label. For a pair, the
first sentence's variants are paired with the original second sentence, then the second
sentence's variants with the original first one (not the reference's pairing with the *last*
variant of the first sentence, method.md).

Output (through :func:`atomic_dir`): parquet shards with :data:`SCHEMA` and ``manifest.json``
with the parameters and counts in :data:`MANIFEST_KEYS`.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tinybert.augment.algorithm import augment_sentence, candidate_sets, example_rng
from tinybert.augment.glove import GloveNeighbours, load_glove
from tinybert.augment.mlm import MlmCandidates
from tinybert.augment.words import basic_words, load_stopwords
from tinybert.config import AugmentConfig, BackboneConfig
from tinybert.errors import InputError
from tinybert.io import ShardWriter, atomic_dir


SCHEMA = pa.schema([
    ("id", pa.int64()),
    ("source_id", pa.int64()),
    ("text", pa.string()),
    ("text_b", pa.string()),
    ("label", pa.float64()),
    ("is_original", pa.bool_()),
])
MANIFEST_KEYS = (
    "p_t", "n_aug", "k", "seed", "glove", "glove_limit", "max_examples", "backbone",
    "source_rows", "augmented_rows", "source_sentences", "original_rows", "generated_rows",
    "words_mlm", "words_glove", "words_itself",
)
# Examples whose candidate sets are computed together: enough MLM inputs to fill several
# batches, few enough that progress is reported often.
CHUNK_EXAMPLES = 128


def read_train(task_dir: Path) -> pa.Table:
    path = Path(task_dir) / "train.parquet"
    if not path.is_file():
        raise InputError(f"{path}: training set not found; run the task stage first")
    try:
        table = pq.read_table(path)
    except Exception as err:
        raise InputError(f"{path}: not a readable parquet file: {err}") from None
    missing = [c for c in ("text", "label", "id") if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; has {', '.join(table.column_names)}")
    label_type = table.schema.field("label").type
    if not (pa.types.is_floating(label_type) or pa.types.is_integer(label_type)):
        raise InputError(f"{path}: column label must be numeric (float64), got {label_type}")
    if table.num_rows == 0:
        raise InputError(f"{path}: no rows to augment")
    if table.column("text").null_count:
        raise InputError(f"{path}: column text has {table.column('text').null_count} null value(s)")
    return table


def load_mlm(mlm_dir: Path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    mlm_dir = Path(mlm_dir)
    if not mlm_dir.is_dir():
        raise InputError(f"{mlm_dir}: masked-LM folder not found; run the mlm stage first")
    try:
        tokenizer = AutoTokenizer.from_pretrained(mlm_dir)
        model = AutoModelForMaskedLM.from_pretrained(mlm_dir)
    except (OSError, ValueError) as err:
        raise InputError(f"{mlm_dir}: cannot load a masked-LM model and tokenizer: {str(err).splitlines()[0]}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"{mlm_dir}: needs a fast tokenizer (tokenizer.json) for basic words and word ids")
    return model, tokenizer


def example_rows(text: str, text_b: str | None, variants: list[str], variants_b: list[str] | None):
    """(text, text_b, is_original) rows of one example: the original, then each sentence's variants
    paired with the *original* other sentence."""
    yield variants[0], text_b, True
    for variant in variants[1:]:
        yield variant, text_b, False
    for variant in (variants_b or [])[1:]:
        yield text, variant, False


def run(backbone: BackboneConfig, cfg: AugmentConfig, *, task_dir: Path, mlm_dir: Path, out_dir: Path) -> None:
    """Augment ``task_dir/train.parquet`` into ``out_dir``.

    ``backbone`` is recorded in the manifest only: the MLM folder carries its own tokenizer,
    which is the backbone's when the mlm stage built it.
    """
    import torch
    from tqdm.auto import tqdm

    table = read_train(task_dir)
    model, tokenizer = load_mlm(mlm_dir)
    kv = load_glove(cfg.glove, cfg.glove_limit)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    mlm = MlmCandidates(model, tokenizer, k=cfg.k, batch_size=cfg.batch_size, device=device)
    glove = GloveNeighbours(kv, k=cfg.k)
    stopwords = load_stopwords()

    texts = table.column("text").to_pylist()
    texts_b = table.column("text_b").to_pylist() if "text_b" in table.column_names else [None] * len(texts)
    labels = table.column("label").cast(pa.float64()).to_pylist()
    ids = table.column("id").cast(pa.int64()).to_pylist()
    # Only the first max_examples rows are augmented (a compute budget); the others are kept
    # as originals, so the student still sees the whole training set.
    n_augmented = len(texts) if cfg.max_examples is None else min(cfg.max_examples, len(texts))
    n_sentences = n_augmented + sum(b is not None for b in texts_b[:n_augmented])

    stats: Counter = Counter()
    with atomic_dir(out_dir) as tmp:
        writer = ShardWriter(tmp, SCHEMA, cfg.shard_rows)
        next_id = 0
        progress = tqdm(total=n_sentences, desc="augment", unit="sent", file=sys.stderr, mininterval=1.0)
        for start in range(0, n_augmented, CHUNK_EXAMPLES):
            rows = range(start, min(start + CHUNK_EXAMPLES, n_augmented))
            # One list of sentences per chunk: [text, text_b?] per example, in order.
            sentences, owners = [], []
            for r in rows:
                for part, text in enumerate((texts[r], texts_b[r])):
                    if text is not None:
                        sentences.append(basic_words(tokenizer, text))
                        owners.append((r, part))
            sets = candidate_sets(sentences, mlm, glove, stopwords, stats)
            # One generator per example, used for text then text_b: output is independent of chunking.
            rngs = {r: example_rng(cfg.seed, ids[r]) for r in rows}
            variants: dict[tuple[int, int], list[str]] = {}
            for (r, part), words, word_sets in zip(owners, sentences, sets):
                original = texts[r] if part == 0 else texts_b[r]
                variants[r, part] = augment_sentence(words, word_sets, cfg.p_t, cfg.n_aug, rngs[r], original=original)
            for r in rows:
                for text, text_b, is_original in example_rows(texts[r], texts_b[r], variants[r, 0], variants.get((r, 1))):
                    writer.add(dict(id=next_id, source_id=ids[r], text=text, text_b=text_b,
                                    label=labels[r], is_original=is_original))
                    next_id += 1
            progress.update(len(sentences))
        progress.close()
        for r in range(n_augmented, len(texts)):
            writer.add(dict(id=next_id, source_id=ids[r], text=texts[r], text_b=texts_b[r], label=labels[r], is_original=True))
            next_id += 1
        writer.metadata.update(
            p_t=cfg.p_t, n_aug=cfg.n_aug, k=cfg.k, seed=cfg.seed, glove=cfg.glove, glove_limit=cfg.glove_limit,
            max_examples=cfg.max_examples, backbone=backbone.model,
            source_rows=len(texts), augmented_rows=n_augmented, source_sentences=n_sentences,
            original_rows=len(texts), generated_rows=next_id - len(texts),
            words_mlm=stats["mlm"], words_glove=stats["glove"], words_itself=stats["itself"],
        )
        writer.close()
