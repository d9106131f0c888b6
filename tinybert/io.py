"""Atomic artifact writing, parquet shards with manifests, small JSON helpers.

Every stage writes its outputs through :func:`atomic_dir` or :func:`atomic_file`, so an
interrupted or failed stage never leaves a half-written artifact where DVC or the next
stage would read it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.json"


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final``; rename it to ``final`` on success.

    On any exception the temporary folder is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final) if final.is_dir() else final.unlink()
    os.replace(tmp, final)


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; move it over ``final`` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_parquet(table: pa.Table, path: str | os.PathLike) -> None:
    # Fixed writer options keep the bytes identical across runs for the same rows.
    pq.write_table(table, path, compression="zstd", write_statistics=False)


class ShardWriter:
    """Buffers rows and writes them as numbered parquet shards of ``shard_rows`` rows.

    ``close()`` writes the manifest (shards, row counts, sha256 checksums, schema and any
    extra metadata). Use inside :func:`atomic_dir` so the folder appears only when complete.
    """

    def __init__(self, folder: Path, schema: pa.Schema, shard_rows: int, metadata: dict | None = None):
        if shard_rows < 1:
            raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
        self.folder = Path(folder)
        self.schema = schema
        self.shard_rows = shard_rows
        self.metadata = dict(metadata or {})
        self._buffer: dict[str, list] = {name: [] for name in schema.names}
        self._shards: list[dict] = []

    def add(self, row: dict) -> None:
        for name in self.schema.names:
            self._buffer[name].append(row[name])
        if len(self._buffer[self.schema.names[0]]) >= self.shard_rows:
            self._flush()

    def _flush(self) -> None:
        n = len(self._buffer[self.schema.names[0]])
        if n == 0:
            return
        name = f"shard-{len(self._shards):05d}.parquet"
        table = pa.table(self._buffer, schema=self.schema)
        write_parquet(table, self.folder / name)
        self._shards.append({"file": name, "rows": n, "sha256": file_sha256(self.folder / name)})
        self._buffer = {key: [] for key in self.schema.names}

    def close(self) -> dict:
        self._flush()
        manifest = {
            "shards": self._shards,
            "rows": sum(s["rows"] for s in self._shards),
            "columns": self.schema.names,
            **self.metadata,
        }
        write_json(self.folder / MANIFEST, manifest)
        return manifest


def read_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        from tinybert.errors import InputError

        raise InputError(f"{folder}: no {MANIFEST}; run the stage that writes it first")
    return read_json(path)


def iter_shards(folder: str | os.PathLike, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Yield each shard of a sharded folder as a table, in manifest order."""
    folder = Path(folder)
    for shard in read_manifest(folder)["shards"]:
        yield pq.read_table(folder / shard["file"], columns=columns)


def read_sharded(folder: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    tables = list(iter_shards(folder, columns))
    if not tables:
        from tinybert.errors import InputError

        raise InputError(f"{folder}: no rows (empty manifest)")
    return pa.concat_tables(tables)
