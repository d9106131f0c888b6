"""`tinybert ablate`: the paper's ablation rows as DVC experiments, a table and a chart."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.integration.conftest import run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(built_repo, tmp_path_factory):
    repo = tmp_path_factory.mktemp("ablation") / "repo"
    shutil.copytree(built_repo, repo, symlinks=True)
    run(repo, "git", "add", "dvc.lock", "data/.gitignore")
    run(repo, "git", "commit", "-qm", "reference run")
    result = run(repo, "tinybert", "ablate", "--only", "full,no-da", "--out", "reports")
    return repo, result


def test_each_row_is_a_named_dvc_experiment_with_its_override(study):
    repo, _ = study
    shown = json.loads(run(repo, "python", "-c", "import dvc.api, json; print(json.dumps(dvc.api.exp_show()))").stdout)
    by_name = {row["Experiment"]: row for row in shown if row.get("Experiment")}
    assert {"ablation-full", "ablation-no-da"} <= set(by_name)
    assert str(by_name["ablation-full"]["task_distill.augmented_data"]) == "True"
    assert str(by_name["ablation-no-da"]["task_distill.augmented_data"]) == "False"


def test_general_distillation_and_the_cached_teacher_logits_are_reused_not_rebuilt(study):
    _, result = study
    assert "Running stage 'general-distill'" not in result.stderr + result.stdout
    assert "Running stage 'teacher-logits'" not in result.stderr + result.stdout
    assert "Running stage 'task-distill'" in result.stderr + result.stdout


def test_the_study_ends_with_a_table_and_a_chart_and_a_clean_workspace(study):
    repo, result = study
    table = (repo / "reports/ablation.md").read_text()
    assert table.startswith("| system | dev accuracy | test accuracy | dev vs full | retention (dev) |")
    assert "| TinyBERT (full) |" in table and "| w/o DA |" in table
    assert table.strip() in result.stdout
    assert (repo / "reports/ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert run(repo, "git", "status", "--porcelain", "--", "params.yaml", "dvc.lock").stdout == ""


def test_a_second_run_keeps_existing_experiments(study):
    repo, _ = study
    again = run(repo, "tinybert", "ablate", "--only", "full", "--out", "reports")
    assert "experiment ablation-full exists, kept" in again.stderr
    assert "Running stage" not in again.stderr + again.stdout


@pytest.fixture(scope="module")
def seeded(study):
    repo, _ = study
    return repo, run(repo, "tinybert", "ablate", "--only", "full", "--seeds", "42,7", "--out", "reports/seeds")


def test_with_seeds_a_row_reruns_only_task_distillation_under_each_new_seed(seeded):
    repo, result = seeded
    assert "experiment ablation-full exists, kept" in result.stderr  # seed 42 is params.yaml's own
    assert "Running stage 'general-distill'" not in result.stderr + result.stdout
    assert "Running stage 'task-distill'" in result.stderr + result.stdout
    shown = json.loads(run(repo, "python", "-c", "import dvc.api, json; print(json.dumps(dvc.api.exp_show()))").stdout)
    seed7 = next(row for row in shown if row.get("Experiment") == "ablation-full-seed7")
    # exp_show gives numbers as floats
    assert float(seed7["task_distill.intermediate.seed"]) == float(seed7["task_distill.prediction.seed"]) == 7
    assert run(repo, "git", "status", "--porcelain", "--", "params.yaml", "dvc.lock").stdout == ""


def test_with_seeds_the_table_gives_the_mean_and_spread_of_the_two_runs(seeded):
    repo, _ = seeded
    results = json.loads((repo / "reports/seeds/ablation.json").read_text())
    (full,) = results
    assert [r["experiment"] for r in full["runs"]] == ["ablation-full", "ablation-full-seed7"]
    assert full["dev"] == pytest.approx(sum(r["dev"] for r in full["runs"]) / 2)
    assert "± " in (repo / "reports/seeds/ablation.md").read_text()
