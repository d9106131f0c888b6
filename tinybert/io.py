"""Atomic artifact writing, parquet files and sharded folders with manifests, small JSON helpers.

Every stage writes its outputs through :func:`atomic_dir` or :func:`atomic_file`, so an
interrupted or failed stage never leaves a half-written artifact where DVC or the next
stage would read it.
"""
from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from tinybert.errors import InputError, first_line

MANIFEST = "manifest.json"


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final``; rename it to ``final`` on success.

    On any exception the temporary folder is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(final)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(final, "tmp"), dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        _finish(tmp)
        _replace_dir(tmp, final)
        _sync([final.parent])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already unless the replacement failed


def _replace_dir(new: Path, final: Path) -> None:
    """Put folder ``new`` at ``final``. An old output moves aside first and is deleted only once
    the new one is in place; if that move fails, the old output goes back."""
    if not final.exists():
        os.replace(new, final)
        return
    aside = Path(tempfile.mkdtemp(prefix=_temporary_prefix(final, "old"), dir=final.parent))
    try:
        os.replace(final, aside / final.name)
        try:
            os.replace(new, final)
        except BaseException:
            os.replace(aside / final.name, final)
            raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; move it over ``final`` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(final)
    fd, name = tempfile.mkstemp(prefix=_temporary_prefix(final, "tmp"), dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _finish(tmp)
    os.replace(tmp, final)
    _sync([final.parent])


# Temporary names carry their writer, ".NAME.tmp-PID@HOST-XXXXXXXX" (".old-" for an output moved
# aside), so that a later write of NAME can tell a killed writer's leftovers from work in progress.
_TEMPORARY_NAME = r"\.{name}\.(?:tmp|old)-(\d+)@(.+)-[a-z0-9_]{{8}}"


def _temporary_prefix(final: Path, kind: str) -> str:
    return f".{final.name}.{kind}-{os.getpid()}@{socket.gethostname()}-"


def _remove_abandoned(final: Path) -> None:
    """Delete what a killed write of ``final`` left beside it (a SIGKILL or a power cut skips
    every cleanup): the temporary names of this machine's processes that no longer run. Any
    other may still be in use (a live process; a Dask worker elsewhere on a shared filesystem),
    and stays, as do names without a writer (from before writers were named)."""
    pattern = re.compile(_TEMPORARY_NAME.format(name=re.escape(final.name)))
    host = socket.gethostname()
    for path in final.parent.glob(f".{glob.escape(final.name)}.*"):
        match = pattern.fullmatch(path.name)
        if match and match[2] == host and not _process_exists(int(match[1])):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _finish(path: Path) -> None:
    """Ready a temporary output for its rename: plain permissions, contents on the disk (one
    walk of the folder serves both)."""
    items = [path, *(path.rglob("*") if path.is_dir() else ())]
    _apply_umask(items)
    _sync(items)


def _sync(items: list[Path]) -> None:
    """Flush ``items`` (a folder listed before what it holds, as :func:`_finish` lists them) to the disk.

    The contents are flushed before the rename and the parent folder after it: a rename alone
    survives a killed process, but after a power loss the new name may point at blocks that were
    never written, and a resumed run would trust an empty checkpoint or shard.
    """
    for item in reversed(items):  # entries before the folders that list them
        if item.is_symlink():
            continue
        try:
            fd = os.open(item, os.O_RDONLY)
        except OSError:
            if item.is_dir():
                continue  # some systems cannot open a folder; its entries were flushed anyway
            raise
        try:
            os.fsync(fd)
        except OSError:
            if not item.is_dir():
                raise
        finally:
            os.close(fd)


def _apply_umask(items: list[Path]) -> None:
    """Give ``items`` the permissions a plain ``open`` or ``mkdir`` would: ``mkdtemp``/``mkstemp``
    make them private (0700/0600), and some writers (safetensors) do too, which locks other
    users of a shared DVC cache or container out."""
    mask = _umask()
    for item in items:
        if not item.is_symlink():
            os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


@functools.cache
def _umask() -> int:
    # Read, not set-and-restore: os.umask would briefly change it for every thread of the process.
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


def content_sha256(path: str | os.PathLike) -> str:
    """One digest of what an input holds, whatever its path or modification times.

    A folder: every file under it (symlinked folders followed), by relative name and contents;
    hidden files and folders are left out, since tools keep download metadata with timestamps
    there (``.cache/huggingface``). A file: its contents and those of its sidecars, the files
    beside it named after it (gensim keeps ``vectors.kv``'s array in ``vectors.kv.vectors.npy``)."""
    path = Path(path)
    if path.is_file():
        files = [path, *sorted(p for p in path.parent.glob(f"{glob.escape(path.name)}.*") if p.is_file())]
        names = [f.name for f in files]
    else:
        files = sorted(
            Path(root, name)
            for root, dirs, found in os.walk(path, followlinks=True)
            if not any(part.startswith(".") for part in Path(root).relative_to(path).parts)
            for name in found
            if not name.startswith(".")
        )
        names = [f.relative_to(path).as_posix() for f in files]
    digest = hashlib.sha256()
    for name, file in zip(names, files):
        try:
            digest.update(f"{name}\0{file_sha256(file)}\n".encode())
        except OSError as err:
            raise InputError(f"{file}: cannot read: {err.strerror or first_line(err)}") from None
    return digest.hexdigest()


def write_parquet(table: pa.Table, path: str | os.PathLike, row_group_rows: int | None = None) -> None:
    """Write ``table`` with fixed options, so the same rows give the same bytes on every run.

    ``row_group_rows`` bounds the rows per row group; :func:`read_rows` then reads a row range
    without decoding the rest of the file.
    """
    pq.write_table(table, path, compression="zstd", write_statistics=False, row_group_size=row_group_rows)


def read_rows(path: str | os.PathLike, start: int, stop: int, columns: list[str] | None = None) -> pa.Table:
    """Rows ``start:stop`` of a parquet file, decoding only the row groups that hold them."""
    parquet = pq.ParquetFile(path)
    groups, first_row, offset = [], None, 0
    for index in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(index).num_rows
        if offset < stop and offset + rows > start:
            groups.append(index)
            first_row = offset if first_row is None else first_row
        offset += rows
    if not groups:
        return parquet.schema_arrow.empty_table().select(columns) if columns else parquet.schema_arrow.empty_table()
    table = parquet.read_row_groups(groups, columns=columns)
    return table.slice(start - first_row, stop - start)


# The stages whose outputs are sharded folders, by the folder's name in dvc.yaml.
SHARDED_OUTPUTS = {"corpus": "prepare-corpus", "augmented": "augment"}


def read_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        writer = SHARDED_OUTPUTS.get(Path(folder).name)
        stage = f"`dvc repro {writer}`" if writer else "the stage that writes it"
        raise InputError(f"{folder}: no {MANIFEST}; run {stage} first")
    return read_json(path)


def iter_shards(folder: str | os.PathLike, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Yield each shard of a sharded folder as a table, in manifest order.

    Each file is checked against the manifest's sha256 first: a shard replaced or edited after
    the stage wrote it (by hand, or by a copy that mixed two runs) would otherwise be read as
    valid rows, and DVC only notices that at its next status check."""
    folder = Path(folder)
    for shard in read_manifest(folder)["shards"]:
        path = folder / shard["file"]
        try:
            data = path.read_bytes()  # one read serves the checksum and the parquet reader
        except OSError as err:
            raise InputError(f"{path}: listed in {MANIFEST} but cannot be read: {err.strerror or first_line(err)}") from None
        if "sha256" in shard and hashlib.sha256(data).hexdigest() != shard["sha256"]:
            raise InputError(f"{path}: contents differ from the sha256 in {MANIFEST} (changed after the stage "
                             f"wrote it); rerun the stage that writes {folder}")
        yield pq.read_table(pa.BufferReader(data), columns=columns)


def read_sharded(folder: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    tables = list(iter_shards(folder, columns))
    if not tables:
        raise InputError(f"{folder}: no rows (empty manifest)")
    return pa.concat_tables(tables)
