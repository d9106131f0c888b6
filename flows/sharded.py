"""A sharded stage as a Prefect flow: plan the shards, map them over a task runner, publish.

Task runners: ``threads`` (default) and ``processes`` on this machine, ``dask`` through
``prefect-dask``: a local cluster of worker processes, or an existing cluster at ``--dask-address``.

    python -m flows.sharded augment --runner processes --workers 2
    python -m flows.sharded augment --runner dask --dask-address tcp://scheduler:8786

Run from the repository root; like the pipeline flow, it records the stage in dvc.lock.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from flows import bad_input_state  # first: Prefect's environment defaults
from prefect import flow, unmapped
from prefect.futures import as_completed

from tasks.shard_tasks import shard_task
from tasks.stage_tasks import check_flow_inputs, commit_stage
from tinybert.config import load_params
from tinybert.errors import InputError, first_line, one_line_errors
from tinybert.sharding import Progress, resume_shards
from tinybert.stages import BY_NAME

RUNNERS = ("threads", "processes", "dask")


def task_runner(kind: str = "threads", workers: int = 2, dask_address: str | None = None):
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
    raise ValueError(f"unknown task runner {kind!r}; use one of {', '.join(RUNNERS)}")


@flow(name="tinybert-shards", log_prints=True)
def sharded_stage(name: str, params: str = "params.yaml") -> int:
    """Run sharded stage ``name``: every missing shard as one task, then the output folder."""
    try:
        return _map_shards(name, params)
    except InputError as err:
        return bad_input_state(err)


def _map_shards(name: str, params: str) -> int:
    stage = BY_NAME[name]
    args = stage.arguments(load_params(params))
    # Absolute paths: the job is pickled to the workers, and those of a Dask cluster started
    # elsewhere resolve relative paths against their own working folder.
    deps = {k: Path(v).resolve() for k, v in stage.deps.items()}
    job = stage.module.plan(*args, **deps)
    job = dataclasses.replace(job, work_dir=job.work_dir.resolve())
    progress = Progress.of(name, job)
    results, todo = resume_shards(job, progress)  # a rerun maps only the shards still missing
    futures = shard_task.map(unmapped(job), todo)
    shard_of = {future.task_run_id: shard for future, shard in zip(futures, todo)}
    failures = []
    for future in as_completed(futures):
        shard = shard_of[future.task_run_id]
        # Not future.state: a worker process's future may still report the state it had in the API.
        try:
            results[shard.index] = future.result()
        except Exception as err:  # after the shard's own retries
            failures.append(err)
        else:
            progress.update(job.units(shard))
    if failures:
        raise failures[0]  # once the other shards have ended, so that a rerun resumes from them
    out_dir = Path(next(iter(stage.outs.values())))
    stage.module.publish(*args, job, [results[s.index] for s in job.shards], out_dir)
    return len(job.shards)


def run_sharded(name: str, params: str, runner: str, workers: int, dask_address: str | None,
                retry_delay_s: float = 10.0) -> int:
    """Run the sub-flow; on a failure other than bad input, again, up to the stage's retry count.

    Each shard has its own Prefect retries, but reading the source (planning) and publishing
    the output run in the sub-flow itself. A rerun resumes from the finished shards, so a retry
    redoes only what is missing; bad input would fail the same way, so it ends the run at once."""
    attempts = BY_NAME[name].retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return sharded_stage.with_options(task_runner=task_runner(runner, workers, dask_address))(name, params)
        except InputError:
            raise
        except Exception as err:
            if attempt == attempts:
                raise
            print(f"[{name}] failed: {first_line(err)}; retry {attempt} of {attempts - 1} in {retry_delay_s:g} s",
                  file=sys.stderr, flush=True)
            time.sleep(retry_delay_s)


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=[s.name for s in BY_NAME.values() if s.sharded])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--runner", choices=RUNNERS, default="threads")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dask-address", default=None)
    args = parser.parse_args()
    load_params(args.params)  # bad parameters fail here, before Prefect starts a server
    check_flow_inputs(".", args.params)
    run_sharded(args.stage, args.params, args.runner, args.workers, args.dask_address)
    # Recorded as `dvc repro` would: else dvc status calls the stage changed, and the next
    # repro or pipeline flow would compute every shard again for the same bytes.
    commit_stage(Path.cwd(), args.stage)


if __name__ == "__main__":
    main()
