"""The paper's ablation study (Tables 6-8) as DVC experiments, one command.

Every row is a named ``dvc exp run`` with ``-S`` overrides of the current ``params.yaml``, so each
run's parameters and metrics stay inspectable with ``dvc exp show`` and any row can be restored
with ``dvc exp apply``. Runs go one after another in the workspace, which is reset to the
committed ``params.yaml`` / ``dvc.lock`` between them. DVC reuses every stage whose inputs a row
does not change: the general student is rebuilt only by rows that change general distillation
(the loss and mapping rows, which the paper applies to both distillation stages). A row whose
experiment already exists is not rerun, so an interrupted study resumes.

The table and the bar chart are built from ``dvc.api.exp_show``, not from files in the workspace.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tinybert.config import LOSS_KINDS
from tinybert.errors import InputError


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


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check)


def reset_workspace() -> None:
    """Back to the committed parameters and artifacts (``dvc exp run`` leaves its row applied)."""
    _sh("git", "checkout", "--", "params.yaml", "dvc.lock")
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


def run_study(only: list[str] | None = None, rerun: bool = False) -> list[Ablation]:
    check_baseline()
    rows = [BY_SLUG[s] for s in only] if only else list(ABLATIONS)
    done = existing_experiments()
    for n, row in enumerate(rows, start=1):
        if row.experiment in done and not rerun:
            print(f"[ablation] {n}/{len(rows)} {row.label}: experiment {row.experiment} exists, kept", file=sys.stderr)
            continue
        print(f"[ablation] {n}/{len(rows)} {row.label}: dvc exp run {' '.join(row.overrides)}", file=sys.stderr, flush=True)
        if row.experiment in done:
            _sh("dvc", "exp", "remove", row.experiment)
        # Not --force: that would also rerun every unchanged stage.
        cmd = ["dvc", "exp", "run", "-n", row.experiment]
        for override in row.overrides:
            cmd += ["-S", override]
        try:
            _sh(*cmd)
        finally:
            reset_workspace()
    return rows


def _value(row: dict, *suffixes: str):
    for key, value in row.items():
        if any(key == s or key.endswith(":" + s) for s in suffixes):
            return value
    return None


def collect(rows: list[Ablation]) -> list[dict]:
    """One result per row (plus the uniform-mapping row) from the experiments' metrics."""
    experiments = existing_experiments()
    results = []
    table_rows = list(rows)
    if any(r.slug == "full" for r in rows) and any(r.group == "mapping" for r in rows):
        index = max(i for i, r in enumerate(table_rows) if r.group == "mapping")
        table_rows.insert(index + 1, UNIFORM)
    for row in table_rows:
        exp = experiments.get(row.experiment)
        if exp is None:
            raise InputError(f"ablation: experiment {row.experiment} not found; run `tinybert ablate` first")
        metric = _value(exp, "metric")
        results.append({
            "slug": row.slug,
            "label": row.label,
            "group": row.group,
            "overrides": list(row.overrides),
            "metric": metric,
            "dev": _value(exp, f"student.dev.{metric}"),
            "test": _value(exp, f"student.test.{metric}"),
            "teacher_dev": _value(exp, f"teacher.dev.{metric}"),
            "retention_dev": _value(exp, "retention.dev"),
        })
    return results


def markdown_table(results: list[dict]) -> str:
    """The paper's ablation-table layout: system, score, and the change from the full model."""
    full = next((r for r in results if r["slug"] == "full"), None)
    metric = results[0]["metric"]
    lines = [
        f"| system | dev {metric} | test {metric} | dev vs full | retention (dev) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        delta = "" if full is None or r is full or r["label"] == "uniform mapping" else f"{r['dev'] - full['dev']:+.4f}"
        lines.append(
            f"| {r['label']} | {r['dev']:.4f} | {r['test']:.4f} | {delta} | {r['retention_dev']:.1%} |"
        )
    teacher = results[0]["teacher_dev"]
    lines.append("")
    lines.append(f"Teacher dev {metric}: {teacher:.4f}.")
    return "\n".join(lines)


def bar_chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"full": "tab:green", "procedure": "tab:red", "objective": "tab:orange", "mapping": "tab:blue"}
    fig, ax = plt.subplots(figsize=(8, 3.8))
    labels = [r["label"].replace(" (attention + hidden)", "") for r in results]
    bars = ax.bar(range(len(results)), [r["dev"] for r in results], color=[colours[r["group"]] for r in results])
    ax.bar_label(bars, fmt="%.3f", fontsize=7)
    teacher = results[0]["teacher_dev"]
    ax.axhline(teacher, color="grey", linestyle="--", linewidth=1, label=f"teacher {teacher:.3f}")
    ax.set_xticks(range(len(results)), labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(f"student dev {results[0]['metric']}")
    low = min(r["dev"] for r in results)
    ax.set_ylim(max(0.0, low - 0.1), min(1.0, max(teacher, *(r["dev"] for r in results)) + 0.05))
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("TinyBERT ablations (DVC experiments)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ablate(only: list[str] | None, out_dir: Path, rerun: bool = False) -> str:
    unknown = [s for s in only or [] if s not in BY_SLUG]
    if unknown:
        raise InputError(f"ablation: unknown row {unknown[0]!r}; rows: {', '.join(BY_SLUG)}")
    rows = run_study(only, rerun)
    results = collect(rows)
    table = markdown_table(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ablation.md").write_text(table + "\n")
    bar_chart(results, out_dir / "ablation.png")
    import json

    (out_dir / "ablation.json").write_text(json.dumps(results, indent=2) + "\n")
    return table
