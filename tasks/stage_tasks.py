"""Thin Prefect tasks over the stage registry: skip what DVC says is up to date, run the
stage function, record the run in dvc.lock and DVC's cache exactly as `dvc repro` would."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.states import Completed

from tinybert.errors import InputError
from tinybert.runtime import PROCESSES_ENV
from tinybert.stages import BY_NAME, run_stage


def retry_unless_bad_input(task, task_run, state) -> bool:
    """Prefect's retry condition: a lock held elsewhere or a failing disk may pass on a second
    try; bad input fails the same way again, so its one-line error should come at once."""
    return not isinstance(state.data, InputError)


# How long a check or a commit waits for DVC's lock, held by another dvc command in the same
# repository (DVC's own wait is 3 s).
LOCK_WAIT_S = 600.0


def _waiting_for_lock(name: str, doing: str, action, wait_s: float | None = None, poll_s: float = 2.0):
    """``action()``, retried while another dvc command holds the repository's lock: a
    ``dvc status`` in another shell should not fail a flow run (or make Prefect's retry train a
    stage again after its outputs are published)."""
    from dvc.lock import LockError

    deadline = time.monotonic() + (LOCK_WAIT_S if wait_s is None else wait_s)
    waiting = False
    while True:
        try:
            return action()
        except LockError:
            if time.monotonic() >= deadline:
                raise
            if not waiting:
                print(f"[{name}] another dvc command holds the repository's lock; waiting to {doing}",
                      file=sys.stderr, flush=True)
                waiting = True
            time.sleep(poll_s)


def stage_is_up_to_date(repo_root: Path, name: str, *, wait_s: float | None = None, poll_s: float = 2.0) -> bool:
    from dvc.repo import Repo

    def check() -> bool:
        with Repo(str(repo_root)) as repo:
            return not repo.status(targets=[name])

    return _waiting_for_lock(name, "check the stage", check, wait_s, poll_s)


def check_flow_inputs(repo_root: str | Path, params: str) -> None:
    """Refuse what the flow would record wrongly in dvc.lock, before any stage runs.

    The flow records each stage it runs with ``dvc commit``, and DVC reads the parameters from
    params.yaml: stages run on another file would be recorded with params.yaml's values, and a
    later edit of that file would go unseen. The flow also runs stages in its own process, so
    it cannot give a stage the several processes that the CLI launches for TINYBERT_PROCESSES."""
    root = Path(repo_root).resolve()
    if (root / params).resolve() != root / "params.yaml":
        raise InputError(f"params {params}: the flow records its runs in dvc.lock, which tracks params.yaml only; "
                         f"copy {params} to params.yaml, or change values with `dvc exp run -S`")
    processes = os.environ.get(PROCESSES_ENV, "").strip()
    if processes not in ("", "1"):
        raise InputError(f"{PROCESSES_ENV}={processes}: the flow trains in its own, single process; run several "
                         f"with `dvc repro` or `tinybert STAGE`, which launch them, or unset {PROCESSES_ENV}")


def restore_from_run_cache(repo_root: Path, name: str) -> bool:
    """Check out the outputs DVC's run cache holds for the stage's current data, parameters and
    code, as `dvc repro` does before it runs a stage (a parameter set back to an earlier value
    costs nothing). False when there are none."""
    from dvc.repo import Repo
    from dvc.stage.cache import RunCacheNotFoundError

    def restore() -> bool:
        with Repo(str(repo_root)) as repo, repo.lock:
            (stage,) = repo.stage.collect(name)
            try:
                repo.stage_cache.restore(stage)
            except RunCacheNotFoundError:
                return False
        return True

    return _waiting_for_lock(name, "look in DVC's run cache", restore)


def commit_stage(repo_root: Path, name: str, *, wait_s: float | None = None, poll_s: float = 2.0) -> None:
    """Record stage ``name``'s outputs in dvc.lock and DVC's cache (``dvc commit``).

    A stage has published its outputs and dropped its checkpoints by now, so a commit that
    failed because another dvc command (a ``dvc status`` in another shell) holds the lock would
    make Prefect's retry train the stage again from the start: wait for the lock instead."""
    from dvc.repo import Repo

    def commit() -> None:
        with Repo(str(repo_root)) as repo:
            repo.commit(name, force=True)

    _waiting_for_lock(name, "record the stage", commit, wait_s, poll_s)


def reuse_earlier_run(repo_root: Path, name: str) -> str | None:
    """Why stage ``name`` need not run, as `dvc repro` decides it: its outputs are up to date,
    or DVC's run cache holds them for its current inputs (checked out and recorded in
    dvc.lock here). None when it must run."""
    if stage_is_up_to_date(repo_root, name):
        return "is up to date (dvc status): skipped"
    if restore_from_run_cache(repo_root, name):
        commit_stage(repo_root, name)
        return "restored from DVC's run cache (an earlier run with the same inputs); recorded in dvc.lock"
    return None


# DVC's content hashes are the cache key (data, parameters and code); Prefect's own result
# cache would key on the task's arguments and miss a changed input file.
@task(cache_policy=NO_CACHE, retry_delay_seconds=10, retry_condition_fn=retry_unless_bad_input, log_prints=True)
def run_stage_task(name: str, repo_root: str = ".", params: str = "params.yaml", force: bool = False):
    logger = get_run_logger()
    root = Path(repo_root).resolve()
    reused = None if force else reuse_earlier_run(root, name)
    if reused:
        logger.info("stage %s %s", name, reused)
        return Completed(message=f"{name}: {reused}", name="Cached")
    if Path.cwd().resolve() != root:
        # Stage paths (and relative paths in params.yaml) are relative to the repository root,
        # as under `dvc repro`; the flow runs stages one at a time, so changing directory is safe.
        os.chdir(root)
    logger.info("running stage %s", name)
    run_stage(name, params)
    commit_stage(root, name)
    logger.info("stage %s done; recorded in dvc.lock", name)
    return Completed(message=f"{name}: ran", name="Completed")


def stage_task(name: str):
    """``run_stage_task`` named after the stage, with that stage's retry count."""
    return run_stage_task.with_options(name=name, task_run_name=name, retries=BY_NAME[name].retries)
