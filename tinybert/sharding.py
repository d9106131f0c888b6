"""Sharded, resumable, parallel stage outputs.

A stage splits its input rows into shards of ``shard_rows`` rows and computes each shard with a
pure function of (stage context, shard): the result depends only on the rows and the seed,
never on which process computed it or in which order. Each finished shard is written
atomically (temporary name, then rename) into a work folder under ``checkpoints/``; a rerun
skips shards already there, so a killed run resumes without losing or duplicating rows. When
all shards are done they move into the output folder with a manifest (shards, row counts,
sha256), all at once (:func:`tinybert.io.atomic_dir`).

Shards run in this process, in a local process pool (``workers`` > 1), or as Prefect tasks
mapped over any task runner (``flows/``), through the same :func:`compute_shard`.
"""
from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa

from tinybert.io import MANIFEST, atomic_dir, atomic_file, file_sha256, read_json, write_json, write_parquet


@dataclass(frozen=True)
class Shard:
    index: int
    start: int  # first input row
    stop: int  # one past the last input row

    @property
    def file(self) -> str:
        return f"shard-{self.index:05d}.parquet"


def plan_shards(num_rows: int, shard_rows: int) -> list[Shard]:
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    return [Shard(i, start, min(start + shard_rows, num_rows)) for i, start in enumerate(range(0, num_rows, shard_rows))]


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to compute any shard: picklable, so it can cross processes.

    ``compute`` is "module:function" taking (job, shard) and returning (table, stats dict).
    """

    compute: str
    context: tuple  # the stage's own arguments (configs and paths)
    work_dir: Path
    shards: tuple[Shard, ...]

    def done(self, shard: Shard) -> bool:
        return (self.work_dir / shard.file).is_file()


def compute_shard(job: ShardJob, shard: Shard) -> dict:
    """Compute one shard unless it is already done; return its row count and stats."""
    stats_path = job.work_dir / f"{shard.file}.json"
    if job.done(shard) and stats_path.is_file():
        return read_json(stats_path)
    module, name = job.compute.split(":")
    table, stats = getattr(importlib.import_module(module), name)(job, shard)
    job.work_dir.mkdir(parents=True, exist_ok=True)
    # Stats first: a shard file without its stats is recomputed, never half-trusted.
    write_json(stats_path, {"rows": table.num_rows, **stats})
    with atomic_file(job.work_dir / shard.file) as tmp:
        write_parquet(table, tmp)
    return {"rows": table.num_rows, **stats}


class Progress:
    """Shards done, rows/s and ETA on stderr, at most once a second (and at the end)."""

    def __init__(self, name: str, shards: int, unit_total: int, unit: str):
        self.name, self.shards, self.total, self.unit = name, shards, unit_total, unit
        self.done_shards, self.done_units, self.began, self.last = 0, 0, time.monotonic(), 0.0

    def update(self, units: int, skipped: bool = False) -> None:
        self.done_shards += 1
        if skipped:
            self.total -= units
        else:
            self.done_units += units
        now = time.monotonic()
        if now - self.last < 1.0 and self.done_shards < self.shards:
            return
        self.last = now
        rate = self.done_units / max(now - self.began, 1e-9)
        left = max(self.total - self.done_units, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        print(f"[{self.name}] shards {self.done_shards}/{self.shards}, {rate:.1f} {self.unit}/s, ETA {eta}",
              file=sys.stderr, flush=True)


class ShardProgress:
    """Progress inside one shard, on stderr, at most every ``every`` seconds: a shard of a slow
    stage (augment) can take minutes, and the stage-level line only moves when one finishes.
    Written by the process computing the shard, so it works the same in a worker."""

    def __init__(self, name: str, shard: Shard, total: int, unit: str, every: float = 15.0):
        self.name, self.shard, self.total, self.unit, self.every = name, shard, total, unit, every
        self.done, self.began = 0, time.monotonic()
        self.last = self.began

    def advance(self, units: int) -> None:
        self.done += units
        now = time.monotonic()
        if now - self.last < self.every or self.done >= self.total:
            return
        self.last = now
        rate = self.done / max(now - self.began, 1e-9)
        print(f"[{self.name}] shard {self.shard.index} (rows {self.shard.start}-{self.shard.stop}): "
              f"{self.done}/{self.total} {self.unit}, {rate:.1f} {self.unit}/s", file=sys.stderr, flush=True)


def run_shards(job: ShardJob, workers: int, progress: Progress, units: Callable[[Shard], int]) -> list[dict]:
    """Compute every shard of ``job`` with ``workers`` local processes (1: in this process)."""
    results: dict[int, dict] = {}
    todo = [s for s in job.shards if not job.done(s)]
    for shard in job.shards:
        if job.done(shard):
            results[shard.index] = compute_shard(job, shard)
            progress.update(units(shard), skipped=True)
    if workers <= 1:
        for shard in todo:
            results[shard.index] = compute_shard(job, shard)
            progress.update(units(shard))
    else:
        # spawn, not fork: torch and tokenizers hold threads that fork would copy half-way.
        context = multiprocessing.get_context("spawn")
        threads = max(1, (os.cpu_count() or 1) // workers)
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_set_threads,
                                                    initargs=(threads,)) as pool:
            futures = {pool.submit(compute_shard, job, shard): shard for shard in todo}
            for future in concurrent.futures.as_completed(futures):
                shard = futures[future]
                results[shard.index] = future.result()
                progress.update(units(shard))
    return [results[s.index] for s in job.shards]


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def publish_shards(job: ShardJob, out_dir: Path, results: Iterable[dict], schema: pa.Schema, metadata: dict) -> dict:
    """Move the finished shards into ``out_dir`` with their manifest, atomically; drop the work folder."""
    results = list(results)
    with atomic_dir(out_dir) as tmp:
        shards = []
        for shard, result in zip(job.shards, results):
            shutil.copyfile(job.work_dir / shard.file, tmp / shard.file)
            shards.append({"file": shard.file, "rows": result["rows"], "sha256": file_sha256(tmp / shard.file)})
        manifest = {"shards": shards, "rows": sum(s["rows"] for s in shards), "columns": schema.names, **metadata}
        write_json(tmp / MANIFEST, manifest)
    shutil.rmtree(job.work_dir, ignore_errors=True)
    return manifest
