"""Serve the pipeline flow as a scheduled deployment (default: every night at 03:00).

Schedules need a real Prefect server (the temporary one refuses them):

    prefect server start --host 127.0.0.1 --port 4200 &
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python -m flows.deploy                       # cron "0 3 * * *"
    python -m flows.deploy --interval 3600       # or every hour

The process stays up and starts each scheduled run; stop it with Ctrl-C.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import flows  # noqa: F401  (Prefect environment defaults)
from flows.pipeline import pipeline
from tasks.stage_tasks import check_flow_inputs
from tinybert.config import load_params
from tinybert.errors import one_line_errors

DEFAULT_CRON = "0 3 * * *"


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the tinybert pipeline on a schedule.")
    parser.add_argument("--name", default="tinybert-nightly")
    parser.add_argument("--cron", default=DEFAULT_CRON, help=f"cron schedule (default {DEFAULT_CRON!r})")
    parser.add_argument("--interval", type=float, help="seconds between runs (replaces --cron)")
    parser.add_argument("--repo", default=".", help="repository to run the pipeline in")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    load_params(Path(args.repo, args.params))  # bad parameters fail here, not at 03:00
    check_flow_inputs(args.repo, args.params)
    schedule = {"interval": args.interval} if args.interval else {"cron": args.cron}
    pipeline.serve(
        name=args.name,
        parameters={"repo_root": str(Path(args.repo).resolve()), "params": args.params},
        # One run at a time: two runs in one folder would publish the same outputs and drop each
        # other's checkpoints; a run due while one is going waits for it.
        limit=1,
        **schedule,
    )


if __name__ == "__main__":
    main()
