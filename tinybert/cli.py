"""Command line: one subcommand per stage, plus lineage, summary and dvc-yaml."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from tinybert.errors import InputError, one_line_errors
from tinybert.runtime import PROCESSES_ENV
from tinybert.stages import BY_NAME, STAGES, run_stage

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="TinyBERT distillation pipeline.")

PARAMS_OPTION = typer.Option("params.yaml", "--params", help="parameters file")


def _stage_command(name: str):
    def command(params: Path = PARAMS_OPTION) -> None:
        if BY_NAME[name].trains and "WORLD_SIZE" not in os.environ:
            processes = _processes()
            if processes > 1:
                sys.exit(_relaunch_under_torchrun(processes))
        run_stage(name, params)

    command.__doc__ = f"Run the {name} stage (reads params.yaml, writes its declared outputs)."
    return command


def _processes() -> int:
    value = os.environ.get(PROCESSES_ENV, "").strip() or "1"
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise InputError(f"{PROCESSES_ENV}: expected a positive number of processes, got {value!r}")
    return int(value)


for _stage in STAGES:
    app.command(_stage.name)(_stage_command(_stage.name))


@app.command()
def lineage(path: str = typer.Argument(..., help="an artifact, e.g. data/student")) -> None:
    """Print the chain of stages that produced PATH: parameters, input hashes, git revision."""
    from tinybert.lineage import lineage_report

    typer.echo(lineage_report(path))


@app.command()
def summary(metrics: Path = typer.Option(Path("data/evaluation/metrics.json"), help="evaluate stage metrics")) -> None:
    """Print the teacher/student summary table."""
    from tinybert.summary import summary_table

    if not metrics.is_file():
        raise InputError(f"{metrics}: not found; run the pipeline first (dvc repro)")
    typer.echo(summary_table(metrics))


@app.command()
def ablate(
    only: str = typer.Option("", help="comma-separated rows (default: all): " + ",".join(
        ["full", "no-gd", "no-td", "no-da", "no-embd", "no-pred", "no-trm", "no-attn", "no-hidn", "map-top", "map-bottom"])),
    out: Path = typer.Option(Path("reports"), help="where ablation.md, ablation.png and ablation.json go"),
    rerun: bool = typer.Option(False, help="rerun rows whose experiment already exists"),
    seeds: str = typer.Option("", help="comma-separated task-distillation seeds, e.g. 42,1,2: each row runs once "
                              "per seed and the table gives mean ± standard deviation (default: params.yaml's)"),
) -> None:
    """Run the paper's ablation study as DVC experiments; print and save the table and chart."""
    from tinybert.ablation import ablate as run_ablation

    rows = [s.strip() for s in only.split(",") if s.strip()] or None
    typer.echo(run_ablation(rows, out, rerun, _integers(seeds, "--seeds") or None))


def _integers(text: str, option: str) -> list[int]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    bad = next((v for v in values if not (v.isascii() and v.lstrip("-").isdigit())), None)
    if bad is not None:
        raise InputError(f"{option}: expected comma-separated integers, got {bad!r}")
    return [int(v) for v in values]


@app.command("dvc-yaml")
def dvc_yaml_command(check: bool = typer.Option(False, help="fail if dvc.yaml differs from the stage list")) -> None:
    """Write dvc.yaml from the stage list (or check it)."""
    from tinybert.dvcfile import check_dvc_yaml, write_dvc_yaml

    if check:
        check_dvc_yaml(Path("dvc.yaml"))
    else:
        write_dvc_yaml(Path("dvc.yaml"))


def _relaunch_under_torchrun(processes: int) -> int:
    """Run this same command in ``processes`` local processes (see tinybert/runtime.py)."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", "tinybert.cli", *sys.argv[1:],
    ]
    print(f"[tinybert] {processes} processes: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    return subprocess.call(cmd)


def _quiet_libraries() -> None:
    # Our own progress lines say what happens; transformers' load reports and per-file
    # progress bars would bury them in every stage's log.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@one_line_errors
def main() -> None:
    _quiet_libraries()
    try:
        app(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as err:  # click's usage errors keep their own formatting
        if isinstance(err, _usage_errors()):
            err.show()
            sys.exit(err.exit_code)
        raise


def _usage_errors() -> tuple[type[Exception], ...]:
    """click's exception base class. Typer 0.2x runs on its own copy of click
    (``typer._click``), whose errors are not ``click.ClickException``; older Typer uses click."""
    import importlib

    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


if __name__ == "__main__":
    main()
