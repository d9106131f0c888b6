"""prepare-corpus at two corpus sizes: peak memory must not grow with the corpus, and the rate.

Builds a plain-text corpus of each size (MiB) from the embedded Wikipedia summaries, repeated
and numbered, documents separated by blank lines, as one file, the way a user hands in a large
text file; then runs the prepare-corpus stage on it in a fresh process and prints its peak RSS,
its time, documents and MB per second, and the larger size's peak over the smaller's.

    python benchmarks/corpus.py [--sizes 32 128] [--shard-documents 1000] [--workers 1]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinybert.assets import resolve  # noqa: E402
from tinybert.data.corpus import documents  # noqa: E402
from tinybert.config import CorpusConfig  # noqa: E402
from stage_process import run_measured  # noqa: E402  (beside this file)


def write_corpus(path: Path, mib: int) -> int:
    """A text file of about ``mib`` MiB; returns its document count."""
    source = resolve("embedded:wikipedia-summaries")
    docs = list(documents(source, "wiki-json", CorpusConfig()))
    target, written, count = mib << 20, 0, 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < target:
            doc = f"Copy {count // len(docs)}. {docs[count % len(docs)]}\n\n"
            fh.write(doc)
            written += len(doc.encode("utf-8"))
            count += 1
    return count


def run_stage(source: Path, shard_documents: int, workers: int) -> tuple[float, float, dict]:
    """(seconds, peak RSS in MB, manifest) of one prepare-corpus process."""
    return run_measured(
        "from tinybert.data import corpus; from tinybert.config import BackboneConfig, CorpusConfig",
        f"corpus.run(BackboneConfig(), CorpusConfig(source={str(source)!r}, format='text', "
        f"shard_documents={shard_documents}, workers={workers}), out_dir=OUT)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[32, 128], help="two corpus sizes in MiB")
    parser.add_argument("--shard-documents", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        for mib in sorted(args.sizes):
            source = Path(tmp) / f"corpus-{mib}.txt"
            count = write_corpus(source, mib)
            seconds, peak, manifest = run_stage(source, args.shard_documents, args.workers)
            peaks.append(peak)
            print(f"prepare-corpus, {mib:4d} MiB text, {count:7d} documents, {manifest['tokens']:,} tokens: "
                  f"peak RSS {peak:6.0f} MB, {seconds:5.1f} s ({count / seconds:,.0f} documents/s, "
                  f"{mib / seconds:.2f} MiB/s; shards of {args.shard_documents}, {args.workers} worker(s))")
            source.unlink()
    small, large = sorted(args.sizes)
    print(f"peak RSS at {large} MiB / at {small} MiB: {peaks[1] / peaks[0]:.2f} (target: about 1, "
          f"for {large / small:.0f}x the text)")


if __name__ == "__main__":
    main()
