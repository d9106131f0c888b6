"""Corpus stage: unlabelled text -> packed, tokenised sequences for general distillation.

Sources (``CorpusConfig.format``):
- ``wiki-json``: a JSON object of title -> {"extract": ...} (the Wikipedia summaries), a
  JSON list of strings or of objects with ``text``, or WikiExtractor's document objects (one, or
  one per line, in a ``.json`` file), streamed entry by entry;
- ``jsonl``: JSON Lines, one document per line (WikiExtractor's output), streamed line by line;
- ``text``: a ``.txt`` file, or a folder of them, with documents separated by blank lines;
- ``wiki-dump``: a MediaWiki XML dump (``*.xml.bz2`` or plain ``.xml``), streamed page by page
  with gensim's ``extract_pages`` and cleaned with ``filter_wiki``.

The source is streamed once into shards of ``shard_documents`` cleaned documents; each shard is
then tokenised and packed on its own (:mod:`tinybert.sharding`: resumable, local processes or
Prefect tasks), so memory stays bounded by a shard and documents never straddle sequences.
Output: the shards' rows in order, in parquet files of ``sharding.PART_ROWS`` rows (whatever
the shard size), with ``input_ids`` (list<int32>, each ``[CLS] ... [SEP]``, at most
``max_seq_len`` long) and ``doc_id`` (int64, index of the kept document), plus
``manifest.json`` with the files' checksums and the metadata listed in :data:`MANIFEST_KEYS`.
"""
from __future__ import annotations

import bz2
import hashlib
import itertools
import json
import re
import shutil
import sys
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from tinybert.assets import resolve
from tinybert.config import BackboneConfig, CorpusConfig
from tinybert.errors import InputError, first_line, not_utf8
from tinybert.io import atomic_file, content_sha256, file_sha256, read_json, write_json, write_parquet
from tinybert.sharding import Progress, Shard, ShardJob, publish_shards, run_shards
from tinybert.training import checkpoint_dir

SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("doc_id", pa.int64())])
MANIFEST_KEYS = ("source", "source_sha256", "format", "documents", "tokens", "max_seq_len", "tokenizer")

# A chunk this short carries almost no context for attention to distil; it is kept only when
# the whole document is that short (otherwise short documents would vanish entirely).
MIN_CHUNK_PIECES = 8
# gensim's WikiCorpus skips pages under 50 words: stubs and disambiguation lists.
DUMP_MIN_WORDS = 50
# Documents go through the fast tokenizer in batches: one call per document is ~10x slower.
TOKENIZE_BATCH = 256

_WS = re.compile(r"\s+")
_BLANK = re.compile(r"[ \t\r\f\v]*\n?")  # a blank line, its line end included
_HEADING = re.compile(r"^\s*=+[^=\n]*=+\s*$", re.MULTILINE)
_BOLD_ITALIC = re.compile(r"'{2,}")


# ----------------------------------------------------------------------------------- sources
def detect_format(path: Path) -> str:
    """Decide the format from the file name, then from the first bytes."""
    if path.is_dir():
        return "text"
    name = path.name.lower()
    if name.endswith((".xml.bz2", ".xml", ".bz2")):
        return "wiki-dump"
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".json"):
        return "wiki-json"
    if name.endswith(".txt"):
        return "text"
    with open(path, "rb") as fh:
        start = _skip_byte_order_mark(fh)
        head = fh.read(512)
        fh.seek(start)
        line, rest = fh.readline(1 << 20), fh.read(1)
    if head.startswith(b"BZh") or head.lstrip().startswith((b"<mediawiki", b"<?xml")):
        return "wiki-dump"
    if head.lstrip()[:1] == b"{" and rest and _is_json_object(line):
        return "jsonl"  # a whole object on the first line and more after it: WikiExtractor's output
    if head.lstrip()[:1] in (b"{", b"["):
        return "wiki-json"
    raise InputError(f"{path}: cannot tell the corpus format; set corpus.format to wiki-json, jsonl, text or wiki-dump")


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False


def source_sha256(path: Path) -> str:
    """sha256 of the file, or for a folder of .txt files, of their relative names and contents."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in _text_files(path):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def _text_files(folder: Path) -> list[Path]:
    # Hidden files and folders are tools' copies (.ipynb_checkpoints/, macOS's ._name), not
    # documents: reading them would double documents or stop on their bytes.
    files = sorted(p for p in folder.rglob("*.txt")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise InputError(f"{folder}: folder holds no .txt files")
    return files


def read_wiki_json(path: Path) -> Iterator[str]:
    """One JSON document: an object of title -> entry, or a list of entries, streamed entry by
    entry with ijson, so memory holds one entry rather than the whole file (a parsed JSON file
    takes several times its size). A title repeated in the object is read each time it appears.
    An object whose first key is a document's field (WikiExtractor's ``id``, ``url``, ``title``,
    ``text``) with a plain value is a document, not a mapping of titles: its entries would be its
    id, url and title as documents of their own."""
    import ijson

    with open(path, "rb") as fh:
        _skip_byte_order_mark(fh)
        first = _first_non_blank(fh)
        if first == b"{" and _opens_as_a_document(fh):
            # WikiExtractor's objects saved as .json: one document, or one per line.
            entries: Iterable = enumerate(ijson.items(fh, "", multiple_values=True, use_float=True), start=1)
        elif first == b"{":
            entries = ijson.kvitems(fh, "", use_float=True)
        elif first == b"[":
            entries = enumerate(ijson.items(fh, "item", use_float=True))
        else:
            found = repr(first.decode("latin-1")) if first else "an empty file"
            raise InputError(f"{path}: expected a JSON object or list, found {found} at the start")
        try:
            for key, value in entries:
                text = _entry_text(value)
                if text is _NOT_AN_ENTRY:
                    raise InputError(f"{path}: entry {key!r} is neither a string nor an object with 'extract' or 'text'")
                if text is not None:
                    yield text
        except ijson.JSONError as err:
            raise InputError(f"{path}: not valid UTF-8 JSON: {_ijson_message(err)}") from None


# A document object's fields, as WikiExtractor and the summaries write them.
DOCUMENT_FIELDS = frozenset({"id", "revid", "url", "title", "text", "extract"})


def _opens_as_a_document(fh) -> bool:
    """Whether the JSON object at the file's position starts with a document's field holding a
    plain value (a mapping of titles has entries, objects or strings, under titles). The file is
    left where it was."""
    import ijson

    start = fh.tell()
    try:
        events = ijson.parse(fh)
        for _prefix, event, value in events:
            if event == "map_key":
                _prefix, value_event, _value = next(events)
                return value in DOCUMENT_FIELDS and value_event not in ("start_map", "start_array")
            if event != "start_map":
                return False
        return False
    except (ijson.JSONError, StopIteration):
        return False  # the read itself reports what is wrong
    finally:
        fh.seek(start)


def _skip_byte_order_mark(fh) -> int:
    """Position a binary file after its UTF-8 byte-order mark (some editors write one; it is not
    content), or at its start; return that position."""
    start = 3 if fh.read(3) == b"\xef\xbb\xbf" else 0
    fh.seek(start)
    return start


def _first_non_blank(fh) -> bytes:
    """The first byte that is not JSON whitespace (b"" for an empty file); the file is left
    positioned just before it."""
    while True:
        start = fh.tell()
        chunk = fh.read(4096)
        if not chunk:
            return b""
        stripped = chunk.lstrip(b" \t\r\n")
        if stripped:
            fh.seek(start + len(chunk) - len(stripped))
            return stripped[:1]


def _ijson_message(err: Exception) -> str:
    """yajl's message is several lines (the error, the text around it, a pointer); keep the error
    and the text around it on one line."""
    message = err.args[0] if err.args else str(err)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    near = [line for line in lines[1:] if "(right here)" not in line]
    return f"{lines[0]} near {near[0][:60]!r}" if near else lines[0]


def read_jsonl(path: Path) -> Iterator[str]:
    """JSON Lines, one document per line (a string, or an object with 'text' or 'extract', as
    WikiExtractor writes them), read line by line: memory holds one document."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise InputError(f"{path}: line {number} is not valid UTF-8 JSON: {first_line(err)}") from None
            text = _entry_text(value)
            if text is _NOT_AN_ENTRY:
                raise InputError(f"{path}: line {number} is neither a string nor an object with 'extract' or 'text'")
            if text is not None:
                yield text


_NOT_AN_ENTRY = object()


def _entry_text(value) -> str | None | object:
    """A document's text; None for an object whose 'extract' or 'text' is null (a summary of a
    missing page, not an error); ``_NOT_AN_ENTRY`` for anything else, an object with neither
    key included (other field names would otherwise drop every document without a word)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and ("extract" in value or "text" in value):
        texts = [value.get(key) for key in ("extract", "text")]
        if all(isinstance(t, str) or t is None for t in texts):
            return next((t for t in texts if t is not None), None)
    return _NOT_AN_ENTRY


def read_text(path: Path) -> Iterator[str]:
    """Documents of a text file (or of a folder's ``.txt`` files), separated by blank lines.

    Read line by line, so memory holds one document, not the file: a corpus of large text files
    streams like a dump. A line of spaces, tabs and other ASCII blanks only counts as blank."""
    for file in _text_files(path) if path.is_dir() else [path]:
        lines: list[str] = []
        offset = 0  # bytes read, for the error message
        with open(file, "rb") as fh:
            for raw in fh:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise not_utf8(file, err, offset) from None
                offset += len(raw)
                if _BLANK.fullmatch(line):
                    if lines:
                        yield "".join(lines)
                    lines = []
                else:
                    lines.append(line)
        if lines:
            yield "".join(lines)


def read_wiki_dump(path: Path) -> Iterator[str]:
    from gensim.corpora.wikicorpus import IGNORED_NAMESPACES, extract_pages, filter_wiki

    with open(path, "rb") as probe:
        compressed = probe.read(3) == b"BZh"
    try:
        with (bz2.open(path, "rb") if compressed else open(path, "rb")) as fh:
            for title, text, _page_id in extract_pages(fh, filter_namespaces=("0",)):
                if not text or text.lstrip().lower().startswith("#redirect"):
                    continue
                if any(title.startswith(ns + ":") for ns in IGNORED_NAMESPACES):
                    continue
                doc = _BOLD_ITALIC.sub("", _HEADING.sub("", filter_wiki(text)))
                if len(doc.split()) >= DUMP_MIN_WORDS:
                    yield doc
    # ElementTree.ParseError is a SyntaxError; gensim raises ValueError for XML that is not MediaWiki's.
    except (OSError, EOFError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: not a readable MediaWiki dump: {first_line(err)}") from None


READERS = {"wiki-json": read_wiki_json, "jsonl": read_jsonl, "text": read_text, "wiki-dump": read_wiki_dump}


def documents(path: Path, fmt: str, cfg: CorpusConfig) -> Iterator[str]:
    """Cleaned documents in source order: whitespace collapsed, short ones dropped, capped."""
    kept = 0
    for raw in READERS[fmt](path):
        doc = _WS.sub(" ", raw).strip()
        if len(doc) < max(cfg.min_chars, 1):
            continue
        yield doc
        kept += 1
        if cfg.max_documents is not None and kept >= cfg.max_documents:
            return


# ----------------------------------------------------------------------------------- packing
def pack(pieces: list[int], max_seq_len: int, cls_id: int, sep_id: int) -> list[list[int]]:
    """Cut one document's word pieces into ``[CLS] chunk [SEP]`` sequences of <= max_seq_len."""
    if not pieces:
        return []
    width = max_seq_len - 2
    chunks = [pieces[i:i + width] for i in range(0, len(pieces), width)]
    if len(pieces) >= MIN_CHUNK_PIECES:
        chunks = [c for c in chunks if len(c) >= MIN_CHUNK_PIECES]
    return [[cls_id, *c, sep_id] for c in chunks]


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@lru_cache(maxsize=2)  # every shard of a run uses the same tokenizer: load it once per process
def load_tokenizer(model: str):
    from tinybert.models import load_tokenizer as load_model_tokenizer

    tok = load_model_tokenizer(model, "backbone.model")
    if tok.cls_token_id is None or tok.sep_token_id is None:
        raise InputError(f"backbone.model: {model}: tokenizer has no [CLS]/[SEP] tokens (a BERT-style tokenizer is needed)")
    # Shards may run in threads (Prefect) and share this tokenizer. A fast tokenizer's first call
    # switches off the truncation and padding its folder set, which takes its Rust state
    # mutably: a second thread encoding then fails with "Already borrowed". One call here, with
    # the shards' own settings, leaves nothing for their calls to change.
    tok(["warm-up"], add_special_tokens=False, verbose=False)
    return tok


# ----------------------------------------------------------------------------------- stage
DOCS_SCHEMA = pa.schema([("text", pa.string())])
DOCUMENTS_DONE = "documents.json"


def split_documents(path: Path, fmt: str, cfg: CorpusConfig, work_dir: Path) -> list[Shard]:
    """Stream the cleaned documents into ``docs-NNNNN.parquet`` files of ``shard_documents``
    documents each, in ``work_dir``; resumable: finished files are counted, not rewritten.

    The source is read once, front to back (a Wikipedia dump is one bz2 stream), holding one
    shard of documents at a time; the shards are then tokenised independently."""
    done = work_dir / DOCUMENTS_DONE
    if done.is_file():
        return [Shard(i, a, b) for i, (a, b) in enumerate(read_json(done)["shards"])]
    work_dir.mkdir(parents=True, exist_ok=True)
    bounds: list[tuple[int, int]] = []
    while (work_dir / _docs_file(len(bounds))).is_file():
        rows = pq.ParquetFile(work_dir / _docs_file(len(bounds))).metadata.num_rows
        start = bounds[-1][1] if bounds else 0
        bounds.append((start, start + rows))
    skipped = bounds[-1][1] if bounds else 0
    if skipped:
        print(f"[prepare-corpus] resuming after {skipped} documents", file=sys.stderr, flush=True)
    stream = itertools.islice(documents(path, fmt, cfg), skipped, None)
    for batch in _batches(stream, cfg.shard_documents):
        start = bounds[-1][1] if bounds else 0
        with atomic_file(work_dir / _docs_file(len(bounds))) as tmp:
            write_parquet(pa.table({"text": batch}, schema=DOCS_SCHEMA), tmp)
        bounds.append((start, start + len(batch)))
        print(f"[prepare-corpus] {bounds[-1][1]} documents read", file=sys.stderr, flush=True)
    if not bounds:
        raise InputError(f"{path}: no documents left after cleaning (format {fmt}, min_chars={cfg.min_chars})")
    write_json(done, {"shards": bounds})
    return [Shard(i, a, b) for i, (a, b) in enumerate(bounds)]


def _docs_file(index: int) -> str:
    return f"docs-{index:05d}.parquet"


def tokenize_shard(job: ShardJob, shard: Shard) -> tuple[pa.Table, dict]:
    """One document shard -> packed ``[CLS] ... [SEP]`` sequences; ``doc_id`` counts from the
    shard's first document, so ids are global and independent of the shard layout."""
    backbone, cfg = job.context
    tok = load_tokenizer(backbone.model)
    texts = pq.read_table(job.work_dir / _docs_file(shard.index)).column("text").to_pylist()
    ids, doc_ids, tokens = [], [], 0
    for offset in range(0, len(texts), TOKENIZE_BATCH):
        # verbose=False: documents longer than the model's 512 are expected; we cut them.
        encoded = tok(texts[offset:offset + TOKENIZE_BATCH], add_special_tokens=False, verbose=False)["input_ids"]
        for n, pieces in enumerate(encoded):
            for seq in pack(pieces, cfg.max_seq_len, tok.cls_token_id, tok.sep_token_id):
                ids.append(seq)
                doc_ids.append(shard.start + offset + n)
                tokens += len(seq)
    return pa.table({"input_ids": ids, "doc_id": doc_ids}, schema=SCHEMA), {"documents": len(texts), "tokens": tokens}


def _source(cfg: CorpusConfig) -> tuple[Path, str]:
    path = resolve(cfg.source, "corpus.source")
    fmt = detect_format(path) if cfg.format == "auto" else cfg.format
    if fmt not in READERS:
        raise InputError(f"{path}: unknown corpus format {fmt!r}; known: {', '.join(READERS)}")
    if path.is_dir() and fmt != "text":
        raise InputError(f"{path}: a folder is only accepted with format 'text', not {fmt!r}")
    return path, fmt


def plan(backbone: BackboneConfig, cfg: CorpusConfig, **_paths) -> ShardJob:
    """Read the source into document shards (sequential, streaming); return the tokenising job."""
    path, fmt = _source(cfg)
    load_tokenizer(backbone.model)  # a bad backbone fails before any work
    # The backbone's folder stands for its tokenizer, which decides every token id.
    fingerprint = (cfg.model_dump(exclude={"workers"}), source_sha256(path), content_sha256(resolve(backbone.model)))
    work_dir = checkpoint_dir("prepare-corpus", fingerprint, module=__name__)
    try:
        shards = split_documents(path, fmt, cfg, work_dir)
    except InputError:
        # The folder is keyed by the source's hash: once the file is fixed, nothing reads it again.
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    return ShardJob(compute="tinybert.data.corpus:tokenize_shard", context=(backbone, cfg), work_dir=work_dir,
                    shards=tuple(shards), unit="documents")


def publish(backbone: BackboneConfig, cfg: CorpusConfig, job: ShardJob, results: list[dict], out_dir: Path) -> dict:
    path, fmt = _source(cfg)
    tokens = sum(r["tokens"] for r in results)
    if tokens == 0:
        raise InputError(f"{path}: no documents left after cleaning (format {fmt}, min_chars={cfg.min_chars})")
    metadata = {
        "source": cfg.source,  # as given, not resolved: the manifest must not depend on the machine
        "source_sha256": source_sha256(path),
        "format": fmt,
        "max_seq_len": cfg.max_seq_len,
        "tokenizer": backbone.model,
        "documents": sum(r["documents"] for r in results),
        "tokens": tokens,
    }
    return publish_shards(job, out_dir, results, SCHEMA, metadata)


def run(backbone: BackboneConfig, cfg: CorpusConfig, *, out_dir: Path) -> None:
    """Write the packed corpus to ``out_dir`` (atomically); raise InputError on bad input.

    Resumable at two levels: documents already split into shards are not read again into
    files, and token shards already written are not recomputed."""
    job = plan(backbone, cfg)
    results = run_shards(job, cfg.workers, Progress.of("prepare-corpus", job))
    publish(backbone, cfg, job, results, out_dir)
