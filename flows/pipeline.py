"""The Prefect flow: the same stages as dvc.yaml, from the same registry, in dependency order.

Run once:   python -m flows.pipeline [--repo .] [--force]
Scheduled:  python -m flows.deploy  (needs `prefect server start`; see README)
"""
from __future__ import annotations

import argparse

import flows  # noqa: F401  (Prefect environment defaults)
from prefect import flow

from tasks.stage_tasks import stage_task
from tinybert.stages import STAGES


@flow(name="tinybert-pipeline", log_prints=True)
def pipeline(repo_root: str = ".", params: str = "params.yaml", force: bool = False) -> list[str]:
    """Run every stage whose data, parameters or code changed; leave dvc.lock as `dvc repro` would.

    Stages run one after another in the registry's (topological) order: each already uses
    every core, and model loading in transformers is not thread-safe.
    """
    return [f"{stage.name}: {stage_task(stage.name)(stage.name, repo_root, params, force)}" for stage in STAGES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--force", action="store_true", help="run every stage even if up to date")
    args = parser.parse_args()
    pipeline(args.repo, args.params, args.force)


if __name__ == "__main__":
    main()
