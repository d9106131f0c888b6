"""The paper's ablation study (Tables 6-8) as DVC experiments, one command.

Every row is a named ``dvc exp run`` with ``-S`` overrides of the current ``params.yaml``, so each
run's parameters and metrics stay inspectable with ``dvc exp show`` and any row can be restored
with ``dvc exp apply``. Runs go one after another in the workspace, which is reset to the
committed ``params.yaml`` / ``dvc.lock`` between them. DVC reuses every stage whose inputs a row
does not change: the general student is rebuilt only by rows that change general distillation
(the loss and mapping rows, which the paper applies to both distillation stages). A row whose
experiment already exists is not rerun, so an interrupted study resumes.

With several seeds each row runs once per seed of task distillation, whose two stages every
row rebuilds, and the table gives the mean and standard deviation: a difference between two rows
means something only beside the spread of one row over seeds.

The table and the bar chart are built from ``dvc.api.exp_show``, not from files in the workspace.
"""
from __future__ import annotations

import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tinybert.config import LOSS_KINDS, load_params
from tinybert.errors import InputError
from tinybert.summary import retention_percent


@dataclass(frozen=True)
class Ablation:
    slug: str
    label: str
    group: str
    overrides: tuple[str, ...] = ()

    @property
    def experiment(self) -> str:
        return f"ablation-{self.slug}"


def _losses_without(*kinds: str) -> tuple[str, ...]:
    kept = [kind for kind in LOSS_KINDS if kind not in kinds]
    return (f"objective.losses=[{','.join(kept)}]",)


# One parameter change per row. The rows of the losses both stages use, and the mapping rows, go
# through the `objective` switches, which both distillation stages obey, as in the paper.
ABLATIONS: tuple[Ablation, ...] = (
    Ablation("full", "TinyBERT (full)", "full"),
    Ablation("no-gd", "w/o GD", "procedure", ("task_distill.general_student=false",)),
    Ablation("no-td", "w/o TD", "procedure", ("task_distill.distillation=false",)),
    Ablation("no-da", "w/o DA", "procedure", ("task_distill.augmented_data=false",)),
    Ablation("no-embd", "w/o L_embd", "objective", _losses_without("embedding")),
    # Task distillation's own weight: general distillation has no prediction loss to switch off,
    # and a change to the objective section would make DVC rebuild the general student.
    Ablation("no-pred", "w/o L_pred", "objective", ("task_distill.weights.prediction=0",)),
    Ablation("no-trm", "w/o L_trm (attention + hidden)", "objective", _losses_without("attention", "hidden")),
    Ablation("no-attn", "w/o L_attn", "objective", _losses_without("attention")),
    Ablation("no-hidn", "w/o L_hidn", "objective", _losses_without("hidden")),
    Ablation("map-top", "top mapping", "mapping", ("objective.mapping=top",)),
    Ablation("map-bottom", "bottom mapping", "mapping", ("objective.mapping=bottom",)),
)
BY_SLUG = {a.slug: a for a in ABLATIONS}
# The paper's uniform-mapping row is the full model itself.
UNIFORM = Ablation("full", "uniform mapping", "mapping")

# Task distillation's training seeds (data order, dropout, the initial weights of what starts
# fresh). Every row rebuilds both task-distillation stages, so varying them measures each row's
# training noise without rebuilding the general student of the rows that reuse it.
SEED_PARAMS = ("task_distill.intermediate.seed", "task_distill.prediction.seed")


@dataclass(frozen=True)
class Run:
    """One experiment: a row under the committed seeds (``seed=None``) or under ``seed``."""

    row: Ablation
    seed: int | None = None

    @property
    def experiment(self) -> str:
        return self.row.experiment if self.seed is None else f"{self.row.experiment}-seed{self.seed}"

    @property
    def overrides(self) -> tuple[str, ...]:
        # "++" sets a key whether or not params.yaml spells it out: the schedules default their seed.
        return self.row.overrides + tuple(f"++{name}={self.seed}" for name in SEED_PARAMS if self.seed is not None)


def planned_runs(rows: list[Ablation], seeds: list[int] | None, committed: tuple[int, ...]) -> list[Run]:
    """Each row once, or once per seed. The seed ``params.yaml`` already gives both steps is the
    row's own experiment, with no override, so it is shared with a study run without seeds."""
    if not seeds:
        return [Run(row) for row in rows]
    outside = next((s for s in seeds if not 0 <= s < 2**32), None)
    if outside is not None:
        raise InputError(f"ablation: --seeds {outside} is not a seed (0 to 2**32 - 1)")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise InputError(f"ablation: --seeds names {repeated[0]} more than once")
    return [Run(row, None if all(seed == c for c in committed) else seed) for row in rows for seed in seeds]


def committed_seeds(params: Path = Path("params.yaml")) -> tuple[int, ...]:
    """The values of :data:`SEED_PARAMS` in ``params``."""
    task = load_params(params).task_distill
    return task.intermediate.seed, task.prediction.seed


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check)


def reset_workspace() -> None:
    """Back to the committed parameters and artifacts (``dvc exp run`` leaves its row applied)."""
    # From HEAD, not the index: a row killed mid-run can leave its params.yaml staged there.
    _sh("git", "checkout", "HEAD", "--", "params.yaml", "dvc.lock")
    _sh("dvc", "checkout", "--quiet")


def existing_experiments() -> dict[str, dict]:
    """Named experiments on the current commit, as flat dicts from ``dvc.api.exp_show``."""
    import dvc.api

    return {row["Experiment"]: row for row in dvc.api.exp_show() if row.get("Experiment")}


def check_baseline() -> None:
    """Experiments are relative to the commit: its params.yaml and dvc.lock must be the workspace's."""
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "dvc.lock"], capture_output=True).returncode == 0
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "params.yaml", "dvc.lock"]).returncode != 0
    if not tracked or changed:
        raise InputError("ablation: params.yaml and dvc.lock must be committed; run `dvc repro`, then commit dvc.lock")


def run_study(runs: list[Run], rerun: bool = False) -> None:
    check_baseline()
    done = existing_experiments()
    for n, run in enumerate(runs, start=1):
        name = run.row.label if run.seed is None else f"{run.row.label}, seed {run.seed}"
        if run.experiment in done and not rerun:
            print(f"[ablation] {n}/{len(runs)} {name}: experiment {run.experiment} exists, kept", file=sys.stderr)
            continue
        print(f"[ablation] {n}/{len(runs)} {name}: dvc exp run {' '.join(run.overrides)}", file=sys.stderr, flush=True)
        if run.experiment in done:
            _sh("dvc", "exp", "remove", run.experiment)
        # Not --force: that would also rerun every unchanged stage.
        cmd = ["dvc", "exp", "run", "-n", run.experiment]
        for override in run.overrides:
            cmd += ["-S", override]
        try:
            _sh(*cmd)
        except subprocess.CalledProcessError as err:
            # DVC has printed why; the rows before this one are kept as experiments.
            raise InputError(f"ablation: {name}: `dvc exp run` failed (exit {err.returncode}); see its output above") from None
        finally:
            reset_workspace()


def _value(row: dict, *suffixes: str):
    for key, value in row.items():
        if any(key == s or key.endswith(":" + s) for s in suffixes):
            return value
    return None


def collect(runs: list[Run]) -> list[dict]:
    """One result per row (plus the uniform-mapping row) from the experiments' metrics: the mean
    over the row's runs, each run's own figures, and the standard deviation of several.

    A row's runs are the planned ones and every other seed experiment of the row on this commit,
    so a study rerun without ``--seeds`` (or with fewer) still reports the spread measured before."""
    experiments = existing_experiments()
    runs = runs + _other_seed_runs(runs, experiments)
    table_rows = list(dict.fromkeys(run.row for run in runs))
    if any(r.slug == "full" for r in table_rows) and any(r.group == "mapping" for r in table_rows):
        index = max(i for i, r in enumerate(table_rows) if r.group == "mapping")
        table_rows.insert(index + 1, UNIFORM)
    results = []
    for row in table_rows:
        measured = []
        for run in (run for run in runs if run.row.slug == row.slug):
            exp = experiments.get(run.experiment)
            if exp is None:
                raise InputError(f"ablation: experiment {run.experiment} not found; run `tinybert ablate` first")
            metric = _value(exp, "metric")
            measured.append({
                "experiment": run.experiment,
                "seed": run.seed,  # None: the seeds params.yaml gives
                "dev": _value(exp, f"student.dev.{metric}"),
                "test": _value(exp, f"student.test.{metric}"),
                "dev_mismatched": _value(exp, f"student.dev_mismatched.{metric}"),  # MNLI-mm; None elsewhere
                "teacher_dev": _value(exp, f"teacher.dev.{metric}"),
                "retention_dev": _value(exp, "retention.dev"),
            })
        dev, dev_sd = _mean_and_spread(measured, "dev")
        test, test_sd = _mean_and_spread(measured, "test")
        mismatched = _mean_and_spread(measured, "dev_mismatched")
        results.append({
            "slug": row.slug,
            "label": row.label,
            "group": row.group,
            "overrides": list(row.overrides),
            "metric": metric,
            "dev": dev,
            "test": test,
            "teacher_dev": measured[0]["teacher_dev"],  # the seeds do not touch the teacher
            "retention_dev": _mean_and_spread(measured, "retention_dev")[0],
            "dev_sd": dev_sd,
            "test_sd": test_sd,
            **({"dev_mismatched": mismatched[0], "dev_mismatched_sd": mismatched[1]} if mismatched[0] is not None else {}),
            "runs": [{k: m[k] for k in ("experiment", "seed", "dev", "test")} for m in measured],
        })
    return results


def _other_seed_runs(runs: list[Run], experiments: dict[str, dict]) -> list[Run]:
    """Finished seed experiments of the runs' rows that ``runs`` does not name (a queued or failed
    one has no metrics yet and is left out)."""
    planned = {run.experiment for run in runs}
    found = []
    for row in dict.fromkeys(run.row for run in runs):
        for seed in sorted({s for s in (_seed_of(name, row) for name in experiments) if s is not None}):
            run = Run(row, seed)
            if run.experiment not in planned and _value(experiments[run.experiment], "metric") is not None:
                found.append(run)
    return found


def _seed_of(experiment: str, row: Ablation) -> int | None:
    """N for the experiment that :class:`Run` names ``row``'s under seed N, else None."""
    match = re.fullmatch(rf"{re.escape(row.experiment)}-seed(-?\d+)", experiment)
    return int(match.group(1)) if match and Run(row, int(match.group(1))).experiment == experiment else None


def _mean_and_spread(measured: list[dict], key: str) -> tuple[float, float | None]:
    """Mean and sample standard deviation of ``key`` over the runs (no spread for one run)."""
    values = [m[key] for m in measured if m[key] is not None]  # None: retention of a teacher at 0
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def markdown_table(results: list[dict]) -> str:
    """The paper's ablation-table layout: system, score, and the change from the full model; with
    several seeds for some row, mean ± standard deviation and a column of run counts."""
    full = next((r for r in results if r["slug"] == "full"), None)
    metric = results[0]["metric"]
    several = any(r.get("dev_sd") is not None for r in results)
    extra = (" runs |", "---|") if several else ("", "")
    # MNLI: the paper's table has a column for the mismatched dev set too.
    mnli = any(r.get("dev_mismatched") is not None for r in results)
    mm = (f" dev_mismatched {metric} |", "---|") if mnli else ("", "")
    lines = [
        f"| system | dev {metric} |{mm[0]} test {metric} | dev vs full | retention (dev) |{extra[0]}",
        f"|---|---|{mm[1]}---|---|---|{extra[1]}",
    ]
    for r in results:
        delta = "" if full is None or r is full or r["label"] == "uniform mapping" else f"{r['dev'] - full['dev']:+.4f}"
        runs = f" {len(r.get('runs') or [r])} |" if several else ""
        mm_cell = f" {_score(r, 'dev_mismatched')} |" if mnli else ""
        lines.append(
            f"| {r['label']} | {_score(r, 'dev')} |{mm_cell} {_score(r, 'test')} | {delta} | {retention_percent(r['retention_dev'])} |{runs}"
        )
    teacher = results[0]["teacher_dev"]
    lines.append("")
    lines.append(f"Teacher dev {metric}: {teacher:.4f}.")
    if several:
        lines.append("Several runs: mean ± standard deviation over task distillation's seeds.")
    return "\n".join(lines)


def _score(result: dict, split: str) -> str:
    if result.get(split) is None:
        return "n/a"
    spread = result.get(f"{split}_sd")
    return f"{result[split]:.4f}" if spread is None else f"{result[split]:.4f} ± {spread:.4f}"


def bar_chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"full": "tab:green", "procedure": "tab:red", "objective": "tab:orange", "mapping": "tab:blue"}
    fig, ax = plt.subplots(figsize=(8, 3.8))
    labels = [r["label"].replace(" (attention + hidden)", "") for r in results]
    spreads = [r.get("dev_sd") or 0.0 for r in results]
    bars = ax.bar(range(len(results)), [r["dev"] for r in results], color=[colours[r["group"]] for r in results],
                  yerr=spreads if any(spreads) else None, capsize=3)
    ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    teacher = results[0]["teacher_dev"]
    ax.axhline(teacher, color="grey", linestyle="--", linewidth=1, label=f"teacher {teacher:.3f}")
    ax.set_xticks(range(len(results)), labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(f"student dev {results[0]['metric']}")
    low = min(r["dev"] - spread for r, spread in zip(results, spreads))
    high = max(r["dev"] + spread for r, spread in zip(results, spreads))
    ax.set_ylim(max(0.0, low - 0.1), min(1.0, max(teacher, high) + 0.05))
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("TinyBERT ablations (DVC experiments)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ablate(only: list[str] | None, out_dir: Path, rerun: bool = False, seeds: list[int] | None = None) -> str:
    unknown = [s for s in only or [] if s not in BY_SLUG]
    if unknown:
        raise InputError(f"ablation: unknown row {unknown[0]!r}; rows: {', '.join(BY_SLUG)}")
    rows = [BY_SLUG[s] for s in only] if only else list(ABLATIONS)
    runs = planned_runs(rows, seeds, committed_seeds() if seeds else ())
    run_study(runs, rerun)
    results = collect(runs)
    table = markdown_table(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ablation.md").write_text(table + "\n")
    bar_chart(results, out_dir / "ablation.png")
    import json

    (out_dir / "ablation.json").write_text(json.dumps(results, indent=2) + "\n")
    return table
