"""The Prefect flow: the same stages as dvc.yaml, from the same registry, in dependency order.

Run once:   python -m flows.pipeline [--repo .] [--force]
Scheduled:  python -m flows.deploy  (needs `prefect server start`; see README)
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from flows import bad_input_state  # first: Prefect's environment defaults
from prefect import flow

from flows.sharded import RUNNERS, run_sharded
from tasks.stage_tasks import check_flow_inputs, commit_stage, reuse_earlier_run, stage_task
from tinybert.config import load_params
from tinybert.errors import InputError, one_line_errors
from tinybert.stages import STAGES


@flow(name="tinybert-pipeline", log_prints=True)
def pipeline(
    repo_root: str = ".",
    params: str = "params.yaml",
    force: bool = False,
    shard_runner: str = "threads",
    shard_workers: int = 2,
    dask_address: str | None = None,
) -> list[str]:
    """Run every stage whose data, parameters or code changed; leave dvc.lock as `dvc repro` would.

    Stages run one after another in the registry's (topological) order: each already uses
    every core, and model loading in transformers is not thread-safe. A sharded stage (augment)
    maps its shards over ``shard_runner`` (threads, processes or dask) as a sub-flow.
    """
    results = []
    try:
        check_flow_inputs(repo_root, params)
        for stage in STAGES:
            if stage.sharded:
                status = _sharded(stage.name, repo_root, params, force, shard_runner, shard_workers, dask_address)
            else:
                status = stage_task(stage.name)(stage.name, repo_root, params, force)
            results.append(f"{stage.name}: {status}")
    except InputError as err:
        return bad_input_state(err)
    return results


def _sharded(name, repo_root, params, force, runner, workers, dask_address) -> str:
    root = Path(repo_root).resolve()
    reused = None if force else reuse_earlier_run(root, name)
    if reused:
        print(f"stage {name} {reused}")
        return "Cached"
    os.chdir(root)  # stage paths are relative to the repository root, as under `dvc repro`
    shards = run_sharded(name, params, runner, workers, dask_address)
    commit_stage(root, name)
    return f"Completed ({shards} shards)"


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--force", action="store_true", help="run every stage even if up to date")
    parser.add_argument("--shard-runner", choices=RUNNERS, default="threads", help="task runner for augment's shards")
    parser.add_argument("--shard-workers", type=int, default=2)
    parser.add_argument("--dask-address", default=None, help="an existing Dask scheduler (with --shard-runner dask)")
    args = parser.parse_args()
    load_params(Path(args.repo, args.params))  # bad parameters fail here, before Prefect starts a server
    check_flow_inputs(args.repo, args.params)
    pipeline(args.repo, args.params, args.force, args.shard_runner, args.shard_workers, args.dask_address)


if __name__ == "__main__":
    main()
