"""prepare-corpus at two corpus sizes: peak memory must not grow with the corpus, and the rate.

Builds a corpus of each size (MiB) from the embedded Wikipedia summaries, repeated and numbered,
as one file in the chosen format (``text``: documents separated by blank lines; ``wiki-json``: one
JSON object of title -> {"extract": ...}, the summaries' own format; ``jsonl``: one JSON object per
line), the way a user hands in a large corpus; then runs the prepare-corpus stage on it in a fresh
process and prints its peak RSS, its time, documents and MB per second, and the larger size's
peak over the smaller's.

    python benchmarks/corpus.py [--sizes 32 128] [--format text] [--shard-documents 1000] [--workers 1]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinybert.assets import resolve  # noqa: E402
from tinybert.data.corpus import documents  # noqa: E402
from tinybert.config import CorpusConfig  # noqa: E402
from stage_process import run_measured  # noqa: E402  (beside this file)


FORMATS = {  # how one document is written in each format: (opening, document, separator, closing)
    "text": ("", lambda n, doc: f"{doc}\n", "\n", ""),
    "wiki-json": ("{", lambda n, doc: f"{json.dumps(f'Page {n}')}: {json.dumps({'extract': doc})}", ",\n", "}\n"),
    "jsonl": ("", lambda n, doc: json.dumps({"id": str(n), "text": doc}), "\n", "\n"),
}

SUFFIXES = {"text": ".txt", "wiki-json": ".json", "jsonl": ".jsonl"}


def write_corpus(path: Path, mib: int, fmt: str) -> int:
    """A corpus file of about ``mib`` MiB in format ``fmt``; returns its document count."""
    source = resolve("embedded:wikipedia-summaries")
    docs = list(documents(source, "wiki-json", CorpusConfig()))
    opening, entry, separator, closing = FORMATS[fmt]
    target, count = mib << 20, 0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(opening)
        written = len(opening)
        while written < target:
            text = (separator if count else "") + entry(count, f"Copy {count // len(docs)}. {docs[count % len(docs)]}")
            fh.write(text)
            written += len(text.encode("utf-8"))
            count += 1
        fh.write(closing)
    return count


def run_stage(source: Path, fmt: str, shard_documents: int, workers: int) -> tuple[float, float, dict]:
    """(seconds, peak RSS in MB, manifest) of one prepare-corpus process."""
    return run_measured(
        "from tinybert.data import corpus; from tinybert.config import BackboneConfig, CorpusConfig",
        f"corpus.run(BackboneConfig(), CorpusConfig(source={str(source)!r}, format={fmt!r}, "
        f"shard_documents={shard_documents}, workers={workers}), out_dir=OUT)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[32, 128], help="two corpus sizes in MiB")
    parser.add_argument("--format", choices=sorted(FORMATS), default="text", help="the corpus file's format")
    parser.add_argument("--shard-documents", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        for mib in sorted(args.sizes):
            source = Path(tmp) / f"corpus-{mib}{SUFFIXES[args.format]}"
            count = write_corpus(source, mib, args.format)
            seconds, peak, manifest = run_stage(source, args.format, args.shard_documents, args.workers)
            peaks.append(peak)
            print(f"prepare-corpus, {mib:4d} MiB {args.format}, {count:7d} documents, {manifest['tokens']:,} tokens: "
                  f"peak RSS {peak:6.0f} MB, {seconds:5.1f} s ({count / seconds:,.0f} documents/s, "
                  f"{mib / seconds:.2f} MiB/s; shards of {args.shard_documents}, {args.workers} worker(s))")
            source.unlink()
    small, large = sorted(args.sizes)
    print(f"peak RSS at {large} MiB / at {small} MiB: {peaks[1] / peaks[0]:.2f} (target: about 1, "
          f"for {large / small:.0f}x the text)")


if __name__ == "__main__":
    main()
