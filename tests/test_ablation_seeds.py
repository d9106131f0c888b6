"""`tinybert ablate --seeds`: each row once per task-distillation seed, the table with mean ± sd."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dvc.utils.hydra import apply_overrides

from tinybert import ablation
from tinybert.ablation import BY_SLUG, Run, collect, markdown_table, planned_runs
from tinybert.config import load_params
from tinybert.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_without_seeds_each_row_runs_once_as_its_plain_experiment():
    runs = planned_runs([BY_SLUG["full"], BY_SLUG["no-da"]], None, ())
    assert [run.experiment for run in runs] == ["ablation-full", "ablation-no-da"]
    assert runs[1].overrides == BY_SLUG["no-da"].overrides


def test_the_committed_seed_is_the_plain_experiment_and_other_seeds_are_named_after_theirs():
    runs = planned_runs([BY_SLUG["full"], BY_SLUG["no-gd"]], [42, 7], committed=(42, 42))
    assert [run.experiment for run in runs] == [
        "ablation-full", "ablation-full-seed7", "ablation-no-gd", "ablation-no-gd-seed7"]
    assert runs[0].overrides == ()
    assert runs[3].overrides == ("task_distill.general_student=false",
                                 "++task_distill.intermediate.seed=7", "++task_distill.prediction.seed=7")


def test_a_seed_the_two_steps_do_not_both_have_is_run_with_an_override():
    runs = planned_runs([BY_SLUG["full"]], [42], committed=(42, 5))
    assert runs[0].experiment == "ablation-full-seed42"


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_the_generators_cannot_take_is_refused_before_any_experiment_runs(seed):
    with pytest.raises(InputError, match=f"--seeds {seed} is not a seed"):
        planned_runs([BY_SLUG["full"]], [42, seed], committed=(42, 42))


def test_a_repeated_seed_is_refused_naming_it():
    with pytest.raises(InputError, match="--seeds names 7 more than once"):
        planned_runs([BY_SLUG["full"]], [7, 1, 7], committed=(42, 42))


def test_a_seed_run_changes_both_task_distillation_seeds_and_nothing_general_distillation_reads(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy2(ROOT / "params.yaml", path)
    before = load_params(path)
    apply_overrides(str(path), list(Run(BY_SLUG["full"], 7).overrides))  # what `dvc exp run -S` does
    after = load_params(path)
    assert (after.task_distill.intermediate.seed, after.task_distill.prediction.seed) == (7, 7)
    assert after.general_distill == before.general_distill and after.objective == before.objective
    assert after.task_distill.model_copy(update={"intermediate": before.task_distill.intermediate,
                                                 "prediction": before.task_distill.prediction}) == before.task_distill


def test_the_committed_seeds_are_read_from_params_yaml():
    task = load_params(ROOT / "params.yaml").task_distill
    assert ablation.committed_seeds(ROOT / "params.yaml") == (task.intermediate.seed, task.prediction.seed)


def _experiment(dev: float, test: float) -> dict:
    # The keys `dvc.api.exp_show` gives, prefixed by the metrics file as DVC does.
    prefix = "data/evaluation/metrics.json:"
    return {prefix + "metric": "accuracy", prefix + "student.dev.accuracy": dev, prefix + "student.test.accuracy": test,
            prefix + "teacher.dev.accuracy": 0.85, prefix + "retention.dev": dev / 0.85}


@pytest.fixture
def three_seeds_of_full_one_of_no_da(monkeypatch):
    experiments = {
        "ablation-full": _experiment(0.82, 0.83),
        "ablation-full-seed1": _experiment(0.80, 0.81),
        "ablation-full-seed2": _experiment(0.84, 0.82),
        "ablation-no-da": _experiment(0.70, 0.72),
    }
    monkeypatch.setattr(ablation, "existing_experiments", lambda: experiments)
    return [Run(BY_SLUG["full"]), Run(BY_SLUG["full"], 1), Run(BY_SLUG["full"], 2), Run(BY_SLUG["no-da"])]


def test_a_row_with_several_seeds_reports_their_mean_spread_and_each_run(three_seeds_of_full_one_of_no_da):
    full, no_da = collect(three_seeds_of_full_one_of_no_da)
    assert full["dev"] == pytest.approx(0.82) and full["test"] == pytest.approx(0.82)
    assert full["dev_sd"] == pytest.approx(0.02) and full["test_sd"] == pytest.approx(0.01)
    assert [(r["experiment"], r["seed"], r["dev"]) for r in full["runs"]] == [
        ("ablation-full", None, 0.82), ("ablation-full-seed1", 1, 0.80), ("ablation-full-seed2", 2, 0.84)]
    assert no_da["dev"] == 0.70 and no_da["dev_sd"] is None and len(no_da["runs"]) == 1


def test_the_table_gives_mean_and_standard_deviation_and_the_number_of_runs(three_seeds_of_full_one_of_no_da):
    table = markdown_table(collect(three_seeds_of_full_one_of_no_da))
    assert "| system | dev accuracy | test accuracy | dev vs full | retention (dev) | runs |" in table
    assert "| TinyBERT (full) | 0.8200 ± 0.0200 | 0.8200 ± 0.0100 |  | 96.5% | 3 |" in table
    assert "| w/o DA | 0.7000 | 0.7200 | -0.1200 | 82.4% | 1 |" in table
    assert "mean ± standard deviation over task distillation's seeds" in table


def test_a_table_of_single_runs_keeps_the_papers_five_columns(monkeypatch):
    monkeypatch.setattr(ablation, "existing_experiments", lambda: {"ablation-full": _experiment(0.82, 0.83)})
    table = markdown_table(collect([Run(BY_SLUG["full"])]))
    assert table.splitlines()[0] == "| system | dev accuracy | test accuracy | dev vs full | retention (dev) |"
    assert "±" not in table


def test_a_missing_seed_experiment_is_named(three_seeds_of_full_one_of_no_da):
    with pytest.raises(InputError, match="experiment ablation-full-seed9 not found"):
        collect([Run(BY_SLUG["full"]), Run(BY_SLUG["full"], 9)])


def test_the_chart_draws_the_spread_of_rows_with_several_runs(three_seeds_of_full_one_of_no_da, tmp_path):
    ablation.bar_chart(collect(three_seeds_of_full_one_of_no_da), tmp_path / "ablation.png")
    assert (tmp_path / "ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_a_study_without_seeds_still_reports_the_seed_runs_made_before(three_seeds_of_full_one_of_no_da):
    full, no_da = collect([Run(BY_SLUG["full"]), Run(BY_SLUG["no-da"])])
    assert [r["experiment"] for r in full["runs"]] == ["ablation-full", "ablation-full-seed1", "ablation-full-seed2"]
    assert full["dev_sd"] == pytest.approx(0.02)
    assert len(no_da["runs"]) == 1


def test_seed_experiments_without_metrics_or_of_other_names_are_not_counted(monkeypatch):
    experiments = {
        "ablation-full": _experiment(0.82, 0.83),
        "ablation-full-seed-1": _experiment(0.80, 0.81),
        "ablation-full-seed3": {"Experiment": "ablation-full-seed3"},  # queued: no metrics yet
        "ablation-full-seed007": _experiment(0.10, 0.10),  # not a name a run gets
    }
    monkeypatch.setattr(ablation, "existing_experiments", lambda: experiments)
    (full,) = collect([Run(BY_SLUG["full"])])
    assert [r["experiment"] for r in full["runs"]] == ["ablation-full", "ablation-full-seed-1"]


def test_on_mnli_the_table_has_the_papers_mismatched_column(monkeypatch):
    prefix = "data/evaluation/metrics.json:"
    experiments = {name: _experiment(dev, dev) | {prefix + "student.dev_mismatched.accuracy": mm}
                   for name, dev, mm in (("ablation-full", 0.82, 0.81), ("ablation-no-da", 0.70, 0.69))}
    monkeypatch.setattr(ablation, "existing_experiments", lambda: experiments)
    table = markdown_table(collect([Run(BY_SLUG["full"]), Run(BY_SLUG["no-da"])]))
    assert table.splitlines()[0] == (
        "| system | dev accuracy | dev_mismatched accuracy | test accuracy | dev vs full | retention (dev) |")
    assert "| w/o DA | 0.7000 | 0.6900 | 0.7000 | -0.1200 | 82.4% |" in table
