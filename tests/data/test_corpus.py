"""The corpus stage: every source format, document cleaning, packing, determinism, errors."""
from __future__ import annotations

import bz2
import json
import random
from pathlib import Path
from xml.sax.saxutils import escape

import pyarrow as pa
import pytest

from tinybert.config import BackboneConfig, CorpusConfig
from tinybert import sharding
from tinybert.data import corpus
from tinybert.errors import InputError
from tinybert.io import read_manifest, read_sharded

BACKBONE = BackboneConfig()  # the embedded MiniLM tokenizer


@pytest.fixture(scope="module")
def tok():
    return corpus.load_tokenizer(BACKBONE.model)


def build(tmp_path: Path, source: Path | str, **params) -> tuple[dict, pa.Table]:
    out = tmp_path / "corpus"
    corpus.run(BACKBONE, CorpusConfig(source=str(source), **params), out_dir=out)
    return read_manifest(out), read_sharded(out)


def decoded_docs(table: pa.Table, tok) -> dict[int, str]:
    """Text of each doc_id, its chunks' pieces joined without the special tokens."""
    pieces: dict[int, list[int]] = {}
    for row in table.to_pylist():
        pieces.setdefault(row["doc_id"], []).extend(row["input_ids"][1:-1])
    return {doc: tok.decode(ids) for doc, ids in pieces.items()}


def assert_input_error(excinfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank."


# ----------------------------------------------------------------------------------- formats
def test_wiki_json_summaries_use_the_extract_of_each_entry(tmp_path, tok):
    src = tmp_path / "summaries.json"
    src.write_text(json.dumps({
        "Fox": {"title": "Fox", "extract": "Foxes are small omnivorous mammals of the dog family.", "topic": "x"},
        "Owl": {"title": "Owl", "extract": "Owls are birds of prey that mostly hunt at night."},
    }))
    manifest, table = build(tmp_path, src)
    assert manifest["format"] == "wiki-json"
    assert manifest["documents"] == 2
    assert manifest["columns"] == ["input_ids", "doc_id"]
    assert table.schema.field("input_ids").type == pa.list_(pa.int32())
    assert table.schema.field("doc_id").type == pa.int64()
    assert decoded_docs(table, tok) == {
        0: "foxes are small omnivorous mammals of the dog family.",
        1: "owls are birds of prey that mostly hunt at night.",
    }


def test_wiki_json_accepts_a_list_of_strings_or_of_objects_with_text(tmp_path, tok):
    src = tmp_path / "docs.json"
    src.write_text(json.dumps(["A plain string document about rivers.", {"text": "An object document about hills."}]))
    manifest, table = build(tmp_path, src)
    assert manifest["documents"] == 2
    assert decoded_docs(table, tok) == {
        0: "a plain string document about rivers.",
        1: "an object document about hills.",
    }


@pytest.mark.parametrize("indent", [None, 2])
def test_a_wikiextractor_object_saved_as_json_is_one_document_not_a_mapping_of_titles(tmp_path, indent):
    src = tmp_path / "page.json"
    src.write_text(json.dumps({"id": "12", "revid": "9", "url": "https://en.wikipedia.org/wiki?curid=12",
                               "title": "Hills", "text": "Hills are landforms higher than plains."}, indent=indent))
    assert corpus.detect_format(src) == "wiki-json"
    assert list(corpus.read_wiki_json(src)) == ["Hills are landforms higher than plains."]


def test_wikiextractor_lines_saved_as_json_give_one_document_per_line(tmp_path):
    src = tmp_path / "wiki_00.json"
    src.write_text("".join(json.dumps({"id": str(i), "title": f"T{i}", "text": f"Document {i}."}) + "\n"
                           for i in range(3)))
    assert list(corpus.read_wiki_json(src)) == ["Document 0.", "Document 1.", "Document 2."]


def test_a_mapping_of_titles_stays_one_whatever_titles_follow_the_first(tmp_path):
    src = tmp_path / "pages.json"
    src.write_text(json.dumps({"Paris": "Paris is a city.", "title": {"extract": "A page called title."}}))
    assert list(corpus.read_wiki_json(src)) == ["Paris is a city.", "A page called title."]
    src.write_text(json.dumps({"title": {"extract": "A first page called title."}, "id": "A page called id."}))
    assert list(corpus.read_wiki_json(src)) == ["A first page called title.", "A page called id."]


def test_wiki_json_is_streamed_with_the_documents_a_whole_file_parse_gives(tmp_path):
    """The summaries' format is read entry by entry; the documents are those of ``json.loads``."""
    rng = random.Random(0)
    pieces = ["Fox", "é", "\u2028", "\\", '"', "\n", "\t", "日本", "😀", " ", "x" * 5000]
    for trial in range(20):
        entries = {f"t{i} {rng.choice(pieces)}": (
            rng.choice(pieces) * rng.randint(1, 3) if rng.random() < 0.3 else
            {"title": "x", "extract": "".join(rng.choices(pieces, k=rng.randint(0, 8))), "n": [1.5, {"a": None}]}
            if rng.random() < 0.8 else {"extract": None})
            for i in range(rng.randint(0, 30))}
        data = entries if trial % 2 else list(entries.values())
        src = tmp_path / "docs.json"
        src.write_text(json.dumps(data, ensure_ascii=bool(trial % 3), indent=rng.choice([None, 1])), encoding="utf-8")
        whole = [v if isinstance(v, str) else v["extract"] for v in (data.values() if isinstance(data, dict) else data)]
        assert list(corpus.read_wiki_json(src)) == [t for t in whole if t is not None]


def test_embedded_summaries_stream_as_json_loads_reads_them():
    from tinybert.assets import resolve
    src = resolve("embedded:wikipedia-summaries")
    whole = json.loads(src.read_text(encoding="utf-8"))
    expected = [t for t in (v.get("extract") or v.get("text") for v in whole.values()) if t is not None]
    assert list(corpus.read_wiki_json(src)) == expected


def test_wiki_json_accepts_a_byte_order_mark_and_leading_blanks(tmp_path):
    src = tmp_path / "docs.json"
    src.write_bytes(b"\xef\xbb\xbf \n\t" + json.dumps(["A document."]).encode())
    assert list(corpus.read_wiki_json(src)) == ["A document."]


@pytest.mark.parametrize("content, fragment", [
    (b'{"a": {"extract": "fine"}} trailing', "trailing garbage"),
    (b'{"a": {"extract": "fine"}, "b": ', "premature EOF"),
    (b'["fine", broken]', "invalid"),
    (b'{"a": "bad byte \xff here"}', "UTF8"),
    (b'  42', "expected a JSON object or list, found '4'"),
    (b'', "expected a JSON object or list, found an empty file"),
    (b'{"a": {"extract": "fine"}, "b": [1]}', "entry 'b' is neither a string nor an object"),
    (b'{"id": "1", "title": "A page without its text"}', "entry 1 is neither a string nor an object"),
    (b'{"id": "1", "text": "fine"}\n{"id": "2", "text": ', "premature EOF"),
])
def test_bad_wiki_json_names_the_file_and_what_is_wrong_on_one_line(tmp_path, content, fragment):
    src = tmp_path / "pages.json"
    src.write_bytes(content)
    with pytest.raises(InputError) as excinfo:
        list(corpus.read_wiki_json(src))
    assert_input_error(excinfo, "pages.json: ", fragment)


def test_text_file_separates_documents_at_blank_lines_and_collapses_whitespace(tmp_path, tok):
    src = tmp_path / "corpus.txt"
    src.write_text("First   document,\nstill the first one.\n\n  \nSecond document\tstarts here.\n")
    manifest, table = build(tmp_path, src)
    assert manifest["format"] == "text"
    assert decoded_docs(table, tok) == {0: "first document, still the first one.", 1: "second document starts here."}


def test_text_folder_reads_its_txt_files_in_name_order(tmp_path, tok):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("Document from file b, long enough.")
    (folder / "a.txt").write_text("Document from file a, long enough.")
    (folder / "sub" / "c.txt").write_text("Document from nested file c, long enough.")
    (folder / "notes.md").write_text("Not a text document and never read.")
    # Tools' hidden copies are not documents: a notebook's checkpoint, macOS's resource fork.
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / ".ipynb_checkpoints" / "a-checkpoint.txt").write_text("Document from file a, long enough.")
    (folder / "._a.txt").write_bytes(b"\x00\x05\x16\x07\xff\xfe not text")
    manifest, table = build(tmp_path, folder)
    assert manifest["format"] == "text"
    assert list(decoded_docs(table, tok).values()) == [
        "document from file a, long enough.",
        "document from file b, long enough.",
        "document from nested file c, long enough.",
    ]


def write_dump(path: Path, pages: list[tuple[str, str, str]]) -> Path:
    """A minimal MediaWiki export: (title, namespace, wikitext) per page, bz2-compressed."""
    body = "".join(
        f"<page><title>{escape(t)}</title><ns>{ns}</ns><id>{i + 1}</id>"
        f"<revision><id>{100 + i}</id><text>{escape(text)}</text></revision></page>"
        for i, (t, ns, text) in enumerate(pages)
    )
    xml = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">'
           "<siteinfo><sitename>Wikipedia</sitename></siteinfo>" + body + "</mediawiki>")
    path.write_bytes(bz2.compress(xml.encode()))
    return path


def test_wiki_dump_keeps_articles_and_skips_redirects_short_pages_and_other_namespaces(tmp_path, tok):
    article = "'''Foxes''' live in [[forest|forests]] and fields. {{cite web|url=x}}\n==Habitat==\n" + " ".join(
        ["Foxes hunt small animals at dusk."] * 10
    )
    src = write_dump(tmp_path / "dump.xml.bz2", [
        ("Fox", "0", article),
        ("Foxes", "0", "#REDIRECT [[Fox]]"),
        ("Stub", "0", "Too short to keep."),
        ("Talk:Fox", "1", article),
    ])
    manifest, table = build(tmp_path, src)
    assert manifest["format"] == "wiki-dump"
    assert manifest["documents"] == 1
    text = decoded_docs(table, tok)[0]
    assert text.startswith("foxes live in forests and fields. foxes hunt small animals at dusk.")
    assert not any(mark in text for mark in ("'''", "==", "[[", "{{", "habitat"))


def test_embedded_wiki_dump_sample_streams_only_max_documents(tmp_path):
    manifest, table = build(tmp_path, "embedded:wikipedia-dump-sample", max_documents=2, max_seq_len=64)
    assert manifest["format"] == "wiki-dump"
    assert manifest["documents"] == 2
    assert set(table.column("doc_id").to_pylist()) == {0, 1}


def test_embedded_summaries_default_is_read_as_wiki_json(tmp_path):
    manifest, table = build(tmp_path, "embedded:wikipedia-summaries", max_documents=20)
    assert manifest["source"] == "embedded:wikipedia-summaries"
    assert manifest["tokenizer"] == "embedded:minilm"
    assert (manifest["format"], manifest["documents"]) == ("wiki-json", 20)
    assert manifest["tokens"] == sum(len(ids) for ids in table.column("input_ids").to_pylist())


@pytest.mark.parametrize("name, content, expected", [
    ("dump.xml.bz2", b"BZh9", "wiki-dump"),
    ("enwiki-shortened.bz2", b"BZh9", "wiki-dump"),
    ("pages.json", b"{}", "wiki-json"),
    ("notes.txt", b"hello", "text"),
    ("no-suffix", b'  [{"text": "x"}]', "wiki-json"),
    ("pages.jsonl", b'{"text": "x"}', "jsonl"),
    ("wiki_00", b'{"id": "1", "text": "x"}\n{"id": "2", "text": "y"}\n', "jsonl"),  # WikiExtractor's output
    ("no-suffix", b'{"a": {"text": "x"}}', "wiki-json"),  # one object, nothing after it
    ("no-suffix", b'{\n "a": "x"\n}\n', "wiki-json"),  # an object over several lines
    ("no-suffix", b'\xef\xbb\xbf{"text": "a"}\n{"text": "b"}\n', "jsonl"),  # after a byte-order mark
    ("no-suffix", b"BZh91AY&SY", "wiki-dump"),
])
def test_auto_format_is_decided_from_the_name_then_the_first_bytes(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    assert corpus.detect_format(path) == expected


# ----------------------------------------------------------------------------------- cleaning and packing
def test_min_chars_drops_short_documents_and_max_documents_keeps_the_first_in_source_order(tmp_path, tok):
    src = tmp_path / "c.txt"
    src.write_text("tiny\n\nThe first long enough document.\n\nok\n\nThe second long enough document.\n\n"
                   "The third long enough document.")
    manifest, table = build(tmp_path, src, min_chars=10, max_documents=2)
    assert manifest["documents"] == 2
    assert decoded_docs(table, tok) == {0: "the first long enough document.", 1: "the second long enough document."}


def test_packing_respects_max_seq_len_and_never_crosses_a_document_boundary(tmp_path, tok):
    docs = [" ".join([SENTENCE] * n) for n in (1, 4, 7)]
    src = tmp_path / "c.txt"
    src.write_text("\n\n".join(docs))
    manifest, table = build(tmp_path, src, max_seq_len=16)
    rows = table.to_pylist()
    assert all(len(r["input_ids"]) <= 16 for r in rows)
    assert all(r["input_ids"][0] == tok.cls_token_id and r["input_ids"][-1] == tok.sep_token_id for r in rows)
    specials = {tok.cls_token_id, tok.sep_token_id}
    assert all(not specials & set(r["input_ids"][1:-1]) for r in rows)
    for doc_id, doc in enumerate(docs):
        pieces = tok(doc, add_special_tokens=False)["input_ids"]
        chunks = [r["input_ids"][1:-1] for r in rows if r["doc_id"] == doc_id]
        joined = [p for c in chunks for p in c]
        # Each document's chunks are its own pieces in order; only a short tail may be missing.
        assert joined == pieces[:len(joined)]
        assert len(pieces) - len(joined) < corpus.MIN_CHUNK_PIECES
    assert [r["doc_id"] for r in rows] == sorted(r["doc_id"] for r in rows)
    assert manifest["tokens"] == sum(len(r["input_ids"]) for r in rows)


def test_pack_drops_short_tail_chunks_but_keeps_a_document_that_is_short_as_a_whole():
    long_doc = list(range(1000, 1000 + 14 + 5))  # one full chunk of 14 pieces and a tail of 5
    assert corpus.pack(long_doc, 16, 101, 102) == [[101, *long_doc[:14], 102]]
    tail_of_8 = list(range(1000, 1000 + 14 + 8))
    assert len(corpus.pack(tail_of_8, 16, 101, 102)) == 2
    short_doc = [1000, 1001, 1002]
    assert corpus.pack(short_doc, 16, 101, 102) == [[101, 1000, 1001, 1002, 102]]
    assert corpus.pack([], 16, 101, 102) == []


def test_output_bytes_do_not_depend_on_shard_size_or_worker_count(tmp_path, monkeypatch):
    src = tmp_path / "c.txt"
    src.write_text("\n\n".join(" ".join([SENTENCE] * n) for n in range(1, 9)))
    monkeypatch.setattr(sharding, "PART_ROWS", 5)  # several output files, cut across shards
    for folder, shard_documents, workers in (("a", 3, 1), ("b", 3, 2), ("c", 1, 1), ("d", 100, 1)):
        corpus.run(BACKBONE, CorpusConfig(source=str(src), max_seq_len=32, shard_documents=shard_documents,
                                          workers=workers), out_dir=tmp_path / folder)
    files = lambda folder: {p.name: p.read_bytes() for p in (tmp_path / folder).iterdir()}  # noqa: E731
    assert files("a") == files("b") == files("c") == files("d")  # manifest included
    assert len(read_manifest(tmp_path / "a")["shards"]) > 1


def test_sequences_do_not_depend_on_the_shard_size(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("\n\n".join(" ".join([SENTENCE] * n) for n in range(1, 9)))
    tables = []
    for size in (1, 3, 100):
        out = tmp_path / f"out{size}"
        corpus.run(BACKBONE, CorpusConfig(source=str(src), max_seq_len=32, shard_documents=size), out_dir=out)
        tables.append(read_sharded(out))
    assert tables[0].equals(tables[1]) and tables[1].equals(tables[2])
    assert tables[0].column("doc_id").to_pylist()[-1] == 7


def test_an_interrupted_run_resumes_without_reading_finished_shards_again(tmp_path, monkeypatch):
    src = tmp_path / "c.txt"
    src.write_text("\n\n".join(" ".join([SENTENCE] * n) for n in range(1, 9)))
    cfg = CorpusConfig(source=str(src), max_seq_len=32, shard_documents=2)
    corpus.run(BACKBONE, cfg, out_dir=tmp_path / "reference")
    real, calls = corpus.tokenize_shard, []

    def dies_on_shard_2(job, shard):
        calls.append(shard.index)
        if shard.index == 2 and calls.count(2) == 1:
            raise KeyboardInterrupt
        return real(job, shard)

    monkeypatch.setattr(corpus, "tokenize_shard", dies_on_shard_2)
    with pytest.raises(KeyboardInterrupt):
        corpus.run(BACKBONE, cfg, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    corpus.run(BACKBONE, cfg, out_dir=tmp_path / "out")
    assert calls == [0, 1, 2, 2, 3]
    assert read_sharded(tmp_path / "out").equals(read_sharded(tmp_path / "reference"))



def test_undecidable_format_names_the_file(tmp_path):
    src = tmp_path / "blob.dat"
    src.write_bytes(b"\x00\x01binary")
    with pytest.raises(InputError) as excinfo:
        build(tmp_path, src)
    assert_input_error(excinfo, "blob.dat", "corpus.format")


def test_zero_documents_after_cleaning_names_the_file_and_leaves_no_output(tmp_path):
    src = tmp_path / "short.txt"
    src.write_text("tiny\n\nsmall\n")
    with pytest.raises(InputError) as excinfo:
        build(tmp_path, src, min_chars=20)
    assert_input_error(excinfo, "short.txt", "no documents")
    assert not (tmp_path / "corpus").exists()
    assert list(tmp_path.iterdir()) == [src]  # no temporary folder left behind either


def test_malformed_json_names_the_file(tmp_path):
    src = tmp_path / "broken.json"
    src.write_text('{"a": ')
    with pytest.raises(InputError) as excinfo:
        build(tmp_path, src)
    assert_input_error(excinfo, "broken.json", "JSON")



def test_a_source_that_fails_halfway_leaves_no_resume_state_behind(tmp_path, monkeypatch):
    # The resume folder is keyed by the source's hash, so a fixed file would never use it.
    monkeypatch.setenv("TINYBERT_CHECKPOINTS", str(tmp_path / "checkpoints"))
    entries = [f"Document {i} is long enough to be kept by the cleaning rules." for i in range(30)]
    src = tmp_path / "cut.json"
    src.write_text(json.dumps(entries)[: 2 * len(json.dumps(entries)) // 3])
    with pytest.raises(InputError) as excinfo:
        build(tmp_path, src, shard_documents=5)
    assert_input_error(excinfo, "cut.json", "JSON")
    assert not any((tmp_path / "checkpoints").rglob("*.parquet"))
    assert not list((tmp_path / "checkpoints").glob("prepare-corpus-*"))

def test_corrupt_dump_names_the_file(tmp_path):
    src = tmp_path / "bad.xml.bz2"
    src.write_bytes(bz2.compress(b"<mediawiki><page><title>unclosed"))
    with pytest.raises(InputError) as excinfo:
        build(tmp_path, src)
    assert_input_error(excinfo, "bad.xml.bz2")


@pytest.mark.parametrize("xml", [b"<mediawiki><page><title>T</title></page></mediawiki>",
                                 b"<?xml version='1.0'?><pages><page><title>T</title></page></pages>"])
def test_xml_that_is_not_a_mediawiki_export_is_a_one_line_error(tmp_path, xml):
    src = tmp_path / "export.xml"
    src.write_bytes(xml)
    with pytest.raises(InputError) as excinfo:
        build(tmp_path, src)
    assert_input_error(excinfo, "export.xml", "MediaWiki")


def test_text_is_read_line_by_line_with_the_documents_a_whole_file_split_at_blank_lines_gives(tmp_path):
    import random
    import re

    rng = random.Random(0)
    pieces = ["word", "other words", " ", "\t", "\r", "\n", "\r\n", "\n\n", "\n \t\n", "\u00a0", "é", "\f\n"]
    for trial in range(200):
        content = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 40)))
        src = tmp_path / f"t{trial}.txt"
        src.write_bytes(content.encode("utf-8"))
        # the rule as first written: the whole file, split at lines of ASCII blanks
        whole = re.split(r"\n[ \t\r\f\v]*\n", content.replace("\r\n", "\n"))
        expected = [d for d in (re.sub(r"\s+", " ", doc).strip() for doc in whole) if d]
        streamed = [d for d in (re.sub(r"\s+", " ", doc).strip() for doc in corpus.read_text(src)) if d]
        assert streamed == expected, repr(content)


def test_text_that_is_not_utf8_names_the_file_and_the_byte(tmp_path):
    src = tmp_path / "corpus.txt"
    src.write_bytes("First document is fine.\n\nSecond one has a bad byte: ".encode() + b"\xff" + b" here.\n")
    with pytest.raises(InputError, match=r"corpus.txt: not UTF-8 text \(byte 0xff at offset 52\)"):
        list(corpus.read_text(src))


def test_json_lines_give_one_document_per_line_as_wikiextractor_writes_them(tmp_path, tok):
    src = tmp_path / "wiki_00"
    lines = [{"id": "1", "title": "Hills", "text": "Hills are   landforms higher than plains."},
             "a plain string document about rivers.", {"id": "3", "text": None}, {"id": "4", "extract": "Lakes are still."}]
    src.write_text("\n".join(json.dumps(line) for line in lines[:2]) + "\n\n" +
                   "\n".join(json.dumps(line) for line in lines[2:]) + "\n")
    manifest, table = build(tmp_path, src, min_chars=5)
    assert manifest["format"] == "jsonl"
    assert list(decoded_docs(table, tok).values()) == [
        "hills are landforms higher than plains.", "a plain string document about rivers.", "lakes are still."]


def test_a_bad_json_line_names_the_file_and_the_line(tmp_path):
    src = tmp_path / "pages.jsonl"
    src.write_text('{"text": "fine"}\n{"text": broken}\n')
    with pytest.raises(InputError, match=r"pages.jsonl: line 2 is not valid UTF-8 JSON"):
        list(corpus.read_jsonl(src))
    src.write_text('{"text": "fine"}\n[1, 2]\n')
    with pytest.raises(InputError, match=r"pages.jsonl: line 2 is neither a string nor an object"):
        list(corpus.read_jsonl(src))
    src.write_text('{"text": "fine"}\n{"body": "another field name drops every document"}\n')
    with pytest.raises(InputError, match=r"pages.jsonl: line 2 is neither a string nor an object with 'extract' or 'text'"):
        list(corpus.read_jsonl(src))


def test_a_null_extract_falls_back_to_the_text_and_a_null_text_is_a_missing_page(tmp_path):
    src = tmp_path / "pages.jsonl"
    src.write_text('{"extract": null, "text": "the text field holds it."}\n{"extract": null}\n{"text": null}\n')
    assert list(corpus.read_jsonl(src)) == ["the text field holds it."]


def test_the_shared_tokenizer_is_settled_before_threads_share_it():
    # A fast tokenizer's first call turns off the truncation and padding its folder sets, taking
    # its Rust state mutably; a thread encoding meanwhile fails with "Already borrowed". Loaded,
    # it must already be as the shards' calls leave it.
    corpus.load_tokenizer.cache_clear()
    backend = corpus.load_tokenizer(BACKBONE.model).backend_tokenizer
    assert (backend.truncation, backend.padding) == (None, None)
