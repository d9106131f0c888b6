"""Sharded, resumable, parallel stage outputs.

A stage splits its input rows into shards of ``shard_rows`` rows and computes each shard with a
pure function of (stage context, shard): the result depends only on the rows and the seed,
never on which process computed it or in which order. Each finished shard is written
atomically (temporary name, then rename) into a work folder under ``checkpoints/``; a rerun
skips shards already there, so a killed run resumes without losing or duplicating rows. When
all shards are done their rows go, in order, into the output folder as files of a fixed number
of rows (:data:`PART_ROWS`) with a manifest (files, row counts, sha256), all at once
(:func:`tinybert.io.atomic_dir`): the output's bytes do not depend on the shard size either.

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
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

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
    # What progress counts and how many of them each shard holds (default: its rows). Augment
    # counts the examples it augments: rows past max_examples are only copied, so counting them
    # would make the rate and ETA wrong.
    unit: str = "rows"
    work: tuple[int, ...] | None = None

    def __post_init__(self):
        if [s.index for s in self.shards] != list(range(len(self.shards))):
            raise ValueError("shards must be numbered 0..n-1 in order")
        if self.work is not None and len(self.work) != len(self.shards):
            raise ValueError(f"work lists {len(self.work)} shards, the job has {len(self.shards)}")

    def stats_file(self, shard: Shard) -> Path:
        return self.work_dir / f"{shard.file}.json"

    def done(self, shard: Shard) -> bool:
        """Finished by an earlier run: a shard file without its stats is recomputed, never
        half-trusted (:func:`compute_shard` writes the stats first)."""
        return (self.work_dir / shard.file).is_file() and self.stats_file(shard).is_file()

    def units(self, shard: Shard) -> int:
        return shard.stop - shard.start if self.work is None else self.work[shard.index]


def compute_shard(job: ShardJob, shard: Shard) -> dict:
    """Compute one shard unless it is already done; return its row count and stats."""
    if job.done(shard):
        return read_json(job.stats_file(shard))
    module, name = job.compute.split(":")
    table, stats = getattr(importlib.import_module(module), name)(job, shard)
    job.work_dir.mkdir(parents=True, exist_ok=True)
    write_json(job.stats_file(shard), {"rows": table.num_rows, **stats})
    with atomic_file(job.work_dir / shard.file) as tmp:
        write_parquet(table, tmp)
    return {"rows": table.num_rows, **stats}


class Progress:
    """Shards done, units/s (the job's unit: examples, documents) and ETA on stderr, at most
    once a second (and at the end)."""

    def __init__(self, name: str, shards: int, unit_total: int, unit: str):
        self.name, self.shards, self.total, self.unit = name, shards, unit_total, unit
        self.done_shards, self.done_units, self.began, self.last = 0, 0, time.monotonic(), 0.0
        self.resumed_shards = 0

    @classmethod
    def of(cls, name: str, job: ShardJob) -> Progress:
        return cls(name, len(job.shards), sum(job.units(s) for s in job.shards), job.unit)

    def resumed(self, shards: int, units: int) -> None:
        """Count the shards an earlier run finished as done, in one line, but not as this run's
        work: they would inflate its rate, and the ETA counts only the units still to do."""
        if not shards:
            return
        self.done_shards += shards
        self.resumed_shards += shards
        self.total -= units
        left = "nothing left to compute" if self.done_shards == self.shards else "resuming"
        print(f"[{self.name}] shards {self.done_shards}/{self.shards} done by an earlier run; {left}",
              file=sys.stderr, flush=True)

    def update(self, units: int) -> None:
        self.done_shards += 1
        self.done_units += units
        now = time.monotonic()
        if now - self.last < 1.0 and self.done_shards < self.shards:
            return
        self.last = now
        rate = self.done_units / max(now - self.began, 1e-9)
        left = max(self.total - self.done_units, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        resumed = f" ({self.resumed_shards} resumed)" if self.resumed_shards else ""
        print(f"[{self.name}] shards {self.done_shards}/{self.shards}{resumed}, {rate:.1f} {self.unit}/s, ETA {eta}",
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


def resume_shards(job: ShardJob, progress: Progress) -> tuple[dict[int, dict], list[Shard]]:
    """The results of the shards an earlier run finished, by index, and the shards still to
    compute. Progress counts the finished ones as an earlier run's (:meth:`Progress.resumed`)."""
    results = {s.index: read_json(job.stats_file(s)) for s in job.shards if job.done(s)}
    progress.resumed(len(results), sum(job.units(job.shards[i]) for i in results))
    return results, [s for s in job.shards if s.index not in results]


def run_shards(job: ShardJob, workers: int, progress: Progress) -> list[dict]:
    """Compute every shard of ``job`` with ``workers`` local processes (1: in this process)."""
    results, todo = resume_shards(job, progress)
    if workers <= 1:
        for shard in todo:
            results[shard.index] = compute_shard(job, shard)
            progress.update(job.units(shard))
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
                progress.update(job.units(shard))
    return [results[s.index] for s in job.shards]


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


# Rows per published file. The output is re-cut into files of this many rows, so its bytes
# depend on the rows alone, not on the shard size that was the unit of work and resume.
PART_ROWS = 65_536


def publish_shards(job: ShardJob, out_dir: Path, results: Iterable[dict], schema: pa.Schema, metadata: dict) -> dict:
    """Write the finished shards' rows, in order, into ``out_dir`` as files of ``PART_ROWS`` rows
    (``part-NNNNN.parquet``) with a manifest (file, rows, sha256 of each), atomically; then drop
    the work folder. Memory holds one shard and one file's rows at a time."""
    list(results)  # every shard is done (its stats are in the stage's manifest metadata)
    part_rows = PART_ROWS
    with atomic_dir(out_dir) as tmp:
        parts: list[dict] = []

        def write(table: pa.Table) -> None:
            name = f"part-{len(parts):05d}.parquet"
            # One chunk per column: the writer's pages would otherwise follow the shards' chunks.
            write_parquet(table.combine_chunks(), tmp / name)
            parts.append({"file": name, "rows": table.num_rows, "sha256": file_sha256(tmp / name)})

        pending: list[pa.Table] = []
        pending_rows = 0
        for shard in job.shards:
            table = pq.read_table(job.work_dir / shard.file).cast(schema)
            pending.append(table)
            pending_rows += table.num_rows
            while pending_rows >= part_rows:
                rows = pa.concat_tables(pending)
                write(rows.slice(0, part_rows))
                pending = [rows.slice(part_rows)]
                pending_rows -= part_rows
        if pending_rows or not parts:
            write(pa.concat_tables(pending) if pending else schema.empty_table())
        manifest = {"shards": parts, "rows": sum(p["rows"] for p in parts), "columns": schema.names, **metadata}
        write_json(tmp / MANIFEST, manifest)
    shutil.rmtree(job.work_dir, ignore_errors=True)
    return manifest
